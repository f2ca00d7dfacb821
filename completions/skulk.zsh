#compdef skulk

autoload -U is-at-least

_skulk() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_skulk_commands" \
"*::: :->skulk" \
&& ret=0
    case $state in
    (skulk)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-command-$line[1]:"
        case $line[1] in
            (validate)
_arguments "${_arguments_options[@]}" : \
'--format=[How problems are reported]:FORMAT:(text json github)' \
'--deny-warnings[Exit 1 when there are warnings]' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
'*::paths -- Files, directories (searched recursively) or glob patterns:_default' \
&& ret=0
;;
(schema)
_arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':kind -- Which schema:(card inventory plan)' \
&& ret=0
;;
(plan)
_arguments "${_arguments_options[@]}" : \
'--card=[Model card file (YAML, JSON or TOML)]:FILE:_files' \
'--inventory=[Inventory file (YAML or JSON)]:FILE:_files' \
'--sharding=[How the model is split]:SHARDING:(pipeline tensor)' \
'--instance=[Instance kind (jaccl needs RDMA interfaces in the inventory)]:INSTANCE:(ring jaccl)' \
'(--nodes)--min-nodes=[Use at least this many hosts]:N:_default' \
'(--nodes)*--exclude=[Never use this host (repeatable)]:NAME:_default' \
'*--nodes=[Use exactly these hosts, in this ring order]:A,B,C:_default' \
'*--layers=[Manual layer split over the chosen hosts in ring order]:N,N,N:_default' \
'--context=[Context tokens to budget for (GGUF models default to at most 8192); the requests served at once share them]:N:_default' \
'--parallel=[Requests served at once (each a sequence in every rank'\''s KV cache)]:P:_default' \
'--queue=[Requests that may wait while \`--parallel\` others run (429 beyond)]:N:_default' \
'--port=[Ring port shared by all ranks (default\: derived from the inputs)]:PORT:_default' \
'--api-bind=[Address the API binds to (default\: rank 0'\''s address)]:ADDR:_default' \
'--api-port=[API port]:PORT:_default' \
'--max-tokens=[Most tokens a request generates when it sets no \`max_tokens\` (default 2048; a request may ask for more, up to the context limit)]:N:_default' \
'--silence-limit=[Seconds a serving rank waits on a silent ring neighbour before it declares it lost (default 3; raised automatically on irregular links)]:SECS:_default' \
'--loading-silence-limit=[Seconds a rank waits on a silent neighbour while the ring forms and loads (default 60)]:SECS:_default' \
'-o+[Output format]:OUTPUT:(table json yaml)' \
'--output=[Output format]:OUTPUT:(table json yaml)' \
'--out=[Also write the plan document to this file\: YAML when its name ends in \`.yaml\` or \`.yml\`, JSON when \`.json\`, else as \`-o\` says (JSON for a table)]:FILE:_files' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(apply)
_arguments "${_arguments_options[@]}" : \
'--known-hosts=[known_hosts file (default\: ~/.ssh/known_hosts)]:FILE:_files' \
'--timeout=[Seconds to wait for the ring to form and the API to answer]:SECS:_default' \
'--api-key-file=[File holding the API bearer token (also\: SKULK_API_KEY)]:FILE:_files' \
'--remote-skulk=[Path of skulk on the hosts, and where \`--install\` puts it (default\: ~/.local/bin/skulk if present, else skulk on the login PATH)]:PATH:_default' \
'--inventory=[The inventory the plan was made from, to plan again without lost hosts (with \`--watch\`)]:FILE:_files' \
'--grace=[Seconds a host may stay unreachable before the plan is made again without it (with \`--watch\`)]:SECS:_default' \
'--drain=[Longest wait for requests in flight before moving back to the full plan, in seconds (with \`--watch\`)]:SECS:_default' \
'--accept-new-host-keys[Trust hosts missing from known_hosts and record their keys]' \
'--install[Copy this skulk binary to hosts where it is missing or differs]' \
'--fetch[Download the model on hosts that lack it]' \
'--dry-run[Print what would run where, start nothing]' \
'--replace[Stop a different plan running on the same hosts first]' \
'(--dry-run)--watch[Stay in the foreground and keep the plan up\: restart a failed ring, plan around a host lost for longer than \`--grace\` (with \`--inventory\`), move back when it returns. Ctrl-C or \`skulk down\` brings the ranks down]' \
'--keep-running[Leave the ranks running when interrupted (with \`--watch\`; \`skulk down\` still brings them down)]' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':plan -- Plan document written by `skulk plan --out` (JSON or YAML):_files' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-o+[Output format]:OUTPUT:(table json yaml)' \
'--output=[Output format]:OUTPUT:(table json yaml)' \
'--known-hosts=[known_hosts file (default\: ~/.ssh/known_hosts)]:FILE:_files' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':plan -- Plan document (JSON or YAML):_files' \
&& ret=0
;;
(down)
_arguments "${_arguments_options[@]}" : \
'--digest=[Also stop the runs of the plan with this digest (or its first 8 or more hex digits) on the plan'\''s hosts]:DIGEST:_default' \
'--timeout=[Seconds to wait for a graceful stop before killing]:SECS:_default' \
'--known-hosts=[known_hosts file (default\: ~/.ssh/known_hosts)]:FILE:_files' \
'--purge[Also remove the rank-local slice caches]' \
'(--digest)--any[Also stop every other skulk run on the plan'\''s hosts (another plan'\''s ring, e.g. after re-planning into the same file)]' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':plan -- Plan document (JSON or YAML):_files' \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
'--node=[Only this host]:NAME:_default' \
'--known-hosts=[known_hosts file (default\: ~/.ssh/known_hosts)]:FILE:_files' \
'-f[Keep printing new lines]' \
'--follow[Keep printing new lines]' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':plan -- Plan document (JSON or YAML):_files' \
&& ret=0
;;
(run-shard)
_arguments "${_arguments_options[@]}" : \
'--plan=[Plan document]:FILE:_files' \
'(--rank)--node=[This host'\''s name in the plan]:NAME:_default' \
'--rank=[This rank'\''s number in the plan]:N:_default' \
'--secret-file=[File holding the ring secret (else read from SKULK_RING_SECRET or stdin)]:FILE:_files' \
'--api-key-file=[File holding the API bearer token (else SKULK_API_KEY; rank 0 only)]:FILE:_files' \
'--threads=[Compute threads (default\: the plan'\''s, else the host'\''s cores)]:N:_default' \
'--gpu-layers=[Layers to offload to the GPU, a count or \`all\` (default\: the plan'\''s)]:N|all:_default' \
'--wire=[Number format of the hidden rows this rank sends\: f32 is exact; f16 halves the bytes on the wire but rounds (output may differ from one process). Receivers read either]:WIRE:(f32 f16)' \
'--max-tokens=[Most tokens a request generates when it sets no \`max_tokens\` (default\: the plan'\''s, else 2048)]:N:_default' \
'--micro-batches=[Rank 0\: micro-batches kept in the ring at once, each with a share of the running requests (default\: one per machine of the ring, so every machine computes; ranks sharing a machine share its cores)]:N:_default' \
'--formation-timeout=[Seconds to wait for the ring to form]:SECS:_default' \
'--cache-dir=[Directory for the rank-local slice cache (default ~/.cache/skulk/shards)]:DIR:_files' \
'--health-file=[File where the rank notes a slow ring neighbour while it is slow]:FILE:_files' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(fetch-model)
_arguments "${_arguments_options[@]}" : \
'--plan=[Plan document]:FILE:_files' \
'--node=[This host'\''s name in the plan]:NAME:_default' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(standby)
_arguments "${_arguments_options[@]}" : \
'--plan=[Plan document (its API address and port are served)]:FILE:_files' \
'--retry-after=[Seconds clients are told to wait]:SECS:_default' \
'--lifetime=[Seconds until the listener exits by itself]:SECS:_default' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(card)
_arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_skulk__subcmd__card_commands" \
"*::: :->card" \
&& ret=0

    case $state in
    (card)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-card-command-$line[1]:"
        case $line[1] in
            (new)
_arguments "${_arguments_options[@]}" : \
'--from-gguf=[Local GGUF file (only its header is read)]:FILE:_files' \
'--from-hf=[Hugging Face repository \`ORG/NAME\`]:ORG/NAME:_default' \
'--revision=[Repository revision (branch, tag or commit)]:REV:_default' \
'--gguf-file=[GGUF file in the repository (default\: the preferred quant)]:FILE:_default' \
'--model-id=[Model id of the card (default\: \`local/<file stem>\` or the repository)]:ID:_default' \
'-o+[Output format]:OUTPUT:(yaml json)' \
'--output=[Output format]:OUTPUT:(yaml json)' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__card__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-card-help-command-$line[1]:"
        case $line[1] in
            (new)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(model)
_arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_skulk__subcmd__model_commands" \
"*::: :->model" \
&& ret=0

    case $state in
    (model)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-model-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
'--card=[The model'\''s card]:FILE:_files' \
'--model-dir=[The model directory, read as an inventory host'\''s \`modelDir\` (\`~\` or a relative path\: under the home directory)]:DIR:_default' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':file -- The GGUF file (for a split model, its first part; the others are found beside it):_files' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__model__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-model-help-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(inventory)
_arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_skulk__subcmd__inventory_commands" \
"*::: :->inventory" \
&& ret=0

    case $state in
    (inventory)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-inventory-command-$line[1]:"
        case $line[1] in
            (probe)
_arguments "${_arguments_options[@]}" : \
'-i+[SSH identity file]:FILE:_files' \
'--identity=[SSH identity file]:FILE:_files' \
'--known-hosts=[known_hosts file (default\: ~/.ssh/known_hosts)]:FILE:_files' \
'--local[Also probe this machine, without SSH\: an entry with \`connection\: local\`]' \
'--accept-new-host-keys[Trust hosts missing from known_hosts and record their keys]' \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
'*::hosts -- `\[user@\]host\[\:port\]`:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__inventory__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-inventory-help-command-$line[1]:"
        case $line[1] in
            (probe)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'(-v --verbose)-q[Print only warnings and errors]' \
'(-v --verbose)--quiet[Print only warnings and errors]' \
'-v[Also print every command run on a host]' \
'--verbose[Also print every command run on a host]' \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
':shell -- Shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-help-command-$line[1]:"
        case $line[1] in
            (validate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(schema)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(plan)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(apply)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(down)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(run-shard)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(fetch-model)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(standby)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(card)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__help__subcmd__card_commands" \
"*::: :->card" \
&& ret=0

    case $state in
    (card)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-help-card-command-$line[1]:"
        case $line[1] in
            (new)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(model)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__help__subcmd__model_commands" \
"*::: :->model" \
&& ret=0

    case $state in
    (model)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-help-model-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(inventory)
_arguments "${_arguments_options[@]}" : \
":: :_skulk__subcmd__help__subcmd__inventory_commands" \
"*::: :->inventory" \
&& ret=0

    case $state in
    (inventory)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:skulk-help-inventory-command-$line[1]:"
        case $line[1] in
            (probe)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_skulk_commands] )) ||
_skulk_commands() {
    local commands; commands=(
'validate:Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules' \
'schema:Print a generated JSON schema' \
'plan:Place a model on an inventory\: ranks, layer ranges, ports, memory' \
'apply:Start every rank of a plan (over SSH or locally) and wait for the API' \
'status:Show the state of every rank of a plan' \
'down:Stop every rank of a plan and clean up' \
'logs:Show the ranks'\'' logs' \
'run-shard:Run one rank of a plan (started by \`skulk apply\`, or by hand)' \
'fetch-model:Download the model of one rank of a plan onto this host (what \`skulk apply --fetch\` runs on each host that lacks it)' \
'standby:Answer 503 with Retry-After at a plan'\''s API address (what \`skulk apply --watch\` runs on the API host while no ring serves)' \
'card:Create and inspect model cards' \
'model:Put model files where ranks look for them' \
'inventory:Inspect hosts for an inventory' \
'completions:Print a shell completion script' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk commands' commands "$@"
}
(( $+functions[_skulk__subcmd__apply_commands] )) ||
_skulk__subcmd__apply_commands() {
    local commands; commands=()
    _describe -t commands 'skulk apply commands' commands "$@"
}
(( $+functions[_skulk__subcmd__card_commands] )) ||
_skulk__subcmd__card_commands() {
    local commands; commands=(
'new:Derive a card from a GGUF file or a Hugging Face repository' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk card commands' commands "$@"
}
(( $+functions[_skulk__subcmd__card__subcmd__help_commands] )) ||
_skulk__subcmd__card__subcmd__help_commands() {
    local commands; commands=(
'new:Derive a card from a GGUF file or a Hugging Face repository' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk card help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__card__subcmd__help__subcmd__help_commands] )) ||
_skulk__subcmd__card__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'skulk card help help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__card__subcmd__help__subcmd__new_commands] )) ||
_skulk__subcmd__card__subcmd__help__subcmd__new_commands() {
    local commands; commands=()
    _describe -t commands 'skulk card help new commands' commands "$@"
}
(( $+functions[_skulk__subcmd__card__subcmd__new_commands] )) ||
_skulk__subcmd__card__subcmd__new_commands() {
    local commands; commands=()
    _describe -t commands 'skulk card new commands' commands "$@"
}
(( $+functions[_skulk__subcmd__completions_commands] )) ||
_skulk__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'skulk completions commands' commands "$@"
}
(( $+functions[_skulk__subcmd__down_commands] )) ||
_skulk__subcmd__down_commands() {
    local commands; commands=()
    _describe -t commands 'skulk down commands' commands "$@"
}
(( $+functions[_skulk__subcmd__fetch-model_commands] )) ||
_skulk__subcmd__fetch-model_commands() {
    local commands; commands=()
    _describe -t commands 'skulk fetch-model commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help_commands] )) ||
_skulk__subcmd__help_commands() {
    local commands; commands=(
'validate:Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules' \
'schema:Print a generated JSON schema' \
'plan:Place a model on an inventory\: ranks, layer ranges, ports, memory' \
'apply:Start every rank of a plan (over SSH or locally) and wait for the API' \
'status:Show the state of every rank of a plan' \
'down:Stop every rank of a plan and clean up' \
'logs:Show the ranks'\'' logs' \
'run-shard:Run one rank of a plan (started by \`skulk apply\`, or by hand)' \
'fetch-model:Download the model of one rank of a plan onto this host (what \`skulk apply --fetch\` runs on each host that lacks it)' \
'standby:Answer 503 with Retry-After at a plan'\''s API address (what \`skulk apply --watch\` runs on the API host while no ring serves)' \
'card:Create and inspect model cards' \
'model:Put model files where ranks look for them' \
'inventory:Inspect hosts for an inventory' \
'completions:Print a shell completion script' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__apply_commands] )) ||
_skulk__subcmd__help__subcmd__apply_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help apply commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__card_commands] )) ||
_skulk__subcmd__help__subcmd__card_commands() {
    local commands; commands=(
'new:Derive a card from a GGUF file or a Hugging Face repository' \
    )
    _describe -t commands 'skulk help card commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__card__subcmd__new_commands] )) ||
_skulk__subcmd__help__subcmd__card__subcmd__new_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help card new commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__completions_commands] )) ||
_skulk__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help completions commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__down_commands] )) ||
_skulk__subcmd__help__subcmd__down_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help down commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__fetch-model_commands] )) ||
_skulk__subcmd__help__subcmd__fetch-model_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help fetch-model commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__help_commands] )) ||
_skulk__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__inventory_commands] )) ||
_skulk__subcmd__help__subcmd__inventory_commands() {
    local commands; commands=(
'probe:Connect to hosts over SSH (or look at this machine with \`--local\`) and print inventory entries for them' \
    )
    _describe -t commands 'skulk help inventory commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__inventory__subcmd__probe_commands] )) ||
_skulk__subcmd__help__subcmd__inventory__subcmd__probe_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help inventory probe commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__logs_commands] )) ||
_skulk__subcmd__help__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help logs commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__model_commands] )) ||
_skulk__subcmd__help__subcmd__model_commands() {
    local commands; commands=(
'add:Put a GGUF file of this machine where a card'\''s ranks look for it (\`<modelDir>/<org>--<name>/<ggufFile>\`)\: hard-linked, or copied' \
    )
    _describe -t commands 'skulk help model commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__model__subcmd__add_commands] )) ||
_skulk__subcmd__help__subcmd__model__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help model add commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__plan_commands] )) ||
_skulk__subcmd__help__subcmd__plan_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help plan commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__run-shard_commands] )) ||
_skulk__subcmd__help__subcmd__run-shard_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help run-shard commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__schema_commands] )) ||
_skulk__subcmd__help__subcmd__schema_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help schema commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__standby_commands] )) ||
_skulk__subcmd__help__subcmd__standby_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help standby commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__status_commands] )) ||
_skulk__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help status commands' commands "$@"
}
(( $+functions[_skulk__subcmd__help__subcmd__validate_commands] )) ||
_skulk__subcmd__help__subcmd__validate_commands() {
    local commands; commands=()
    _describe -t commands 'skulk help validate commands' commands "$@"
}
(( $+functions[_skulk__subcmd__inventory_commands] )) ||
_skulk__subcmd__inventory_commands() {
    local commands; commands=(
'probe:Connect to hosts over SSH (or look at this machine with \`--local\`) and print inventory entries for them' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk inventory commands' commands "$@"
}
(( $+functions[_skulk__subcmd__inventory__subcmd__help_commands] )) ||
_skulk__subcmd__inventory__subcmd__help_commands() {
    local commands; commands=(
'probe:Connect to hosts over SSH (or look at this machine with \`--local\`) and print inventory entries for them' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk inventory help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__inventory__subcmd__help__subcmd__help_commands] )) ||
_skulk__subcmd__inventory__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'skulk inventory help help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__inventory__subcmd__help__subcmd__probe_commands] )) ||
_skulk__subcmd__inventory__subcmd__help__subcmd__probe_commands() {
    local commands; commands=()
    _describe -t commands 'skulk inventory help probe commands' commands "$@"
}
(( $+functions[_skulk__subcmd__inventory__subcmd__probe_commands] )) ||
_skulk__subcmd__inventory__subcmd__probe_commands() {
    local commands; commands=()
    _describe -t commands 'skulk inventory probe commands' commands "$@"
}
(( $+functions[_skulk__subcmd__logs_commands] )) ||
_skulk__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'skulk logs commands' commands "$@"
}
(( $+functions[_skulk__subcmd__model_commands] )) ||
_skulk__subcmd__model_commands() {
    local commands; commands=(
'add:Put a GGUF file of this machine where a card'\''s ranks look for it (\`<modelDir>/<org>--<name>/<ggufFile>\`)\: hard-linked, or copied' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk model commands' commands "$@"
}
(( $+functions[_skulk__subcmd__model__subcmd__add_commands] )) ||
_skulk__subcmd__model__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'skulk model add commands' commands "$@"
}
(( $+functions[_skulk__subcmd__model__subcmd__help_commands] )) ||
_skulk__subcmd__model__subcmd__help_commands() {
    local commands; commands=(
'add:Put a GGUF file of this machine where a card'\''s ranks look for it (\`<modelDir>/<org>--<name>/<ggufFile>\`)\: hard-linked, or copied' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'skulk model help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__model__subcmd__help__subcmd__add_commands] )) ||
_skulk__subcmd__model__subcmd__help__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'skulk model help add commands' commands "$@"
}
(( $+functions[_skulk__subcmd__model__subcmd__help__subcmd__help_commands] )) ||
_skulk__subcmd__model__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'skulk model help help commands' commands "$@"
}
(( $+functions[_skulk__subcmd__plan_commands] )) ||
_skulk__subcmd__plan_commands() {
    local commands; commands=()
    _describe -t commands 'skulk plan commands' commands "$@"
}
(( $+functions[_skulk__subcmd__run-shard_commands] )) ||
_skulk__subcmd__run-shard_commands() {
    local commands; commands=()
    _describe -t commands 'skulk run-shard commands' commands "$@"
}
(( $+functions[_skulk__subcmd__schema_commands] )) ||
_skulk__subcmd__schema_commands() {
    local commands; commands=()
    _describe -t commands 'skulk schema commands' commands "$@"
}
(( $+functions[_skulk__subcmd__standby_commands] )) ||
_skulk__subcmd__standby_commands() {
    local commands; commands=()
    _describe -t commands 'skulk standby commands' commands "$@"
}
(( $+functions[_skulk__subcmd__status_commands] )) ||
_skulk__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'skulk status commands' commands "$@"
}
(( $+functions[_skulk__subcmd__validate_commands] )) ||
_skulk__subcmd__validate_commands() {
    local commands; commands=()
    _describe -t commands 'skulk validate commands' commands "$@"
}

if [ "$funcstack[1]" = "_skulk" ]; then
    _skulk "$@"
else
    compdef _skulk skulk
fi
