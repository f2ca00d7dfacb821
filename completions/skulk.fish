# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_skulk_global_optspecs
    string join \n q/quiet v/verbose h/help V/version
end

function __fish_skulk_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_skulk_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_skulk_using_subcommand
    set -l cmd (__fish_skulk_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c skulk -n "__fish_skulk_needs_command" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_needs_command" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c skulk -n "__fish_skulk_needs_command" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "validate" -d 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "schema" -d 'Print a generated JSON schema'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "plan" -d 'Place a model on an inventory: ranks, layer ranges, ports, memory'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "apply" -d 'Start every rank of a plan (over SSH or locally) and wait for the API'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "status" -d 'Show the state of every rank of a plan'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "down" -d 'Stop every rank of a plan and clean up'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "logs" -d 'Show the ranks\' logs'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "run-shard" -d 'Run one rank of a plan (started by `skulk apply`, or by hand)'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "fetch-model" -d 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "standby" -d 'Answer 503 with Retry-After at a plan\'s API address (what `skulk apply --watch` runs on the API host while no ring serves)'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "card" -d 'Create and inspect model cards'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "model" -d 'Put model files where ranks look for them'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "inventory" -d 'Inspect hosts for an inventory'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c skulk -n "__fish_skulk_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand validate" -l format -d 'How problems are reported' -r -f -a "text\t''
json\t''
github\t''"
complete -c skulk -n "__fish_skulk_using_subcommand validate" -l deny-warnings -d 'Exit 1 when there are warnings'
complete -c skulk -n "__fish_skulk_using_subcommand validate" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand validate" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand validate" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand validate" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand schema" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand schema" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand schema" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand schema" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l card -d 'Model card file (YAML, JSON or TOML)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l inventory -d 'Inventory file (YAML or JSON)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l sharding -d 'How the model is split' -r -f -a "pipeline\t''
tensor\t''"
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l instance -d 'Instance kind (jaccl needs RDMA interfaces in the inventory)' -r -f -a "ring\t''
jaccl\t''"
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l min-nodes -d 'Use at least this many hosts' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l exclude -d 'Never use this host (repeatable)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l nodes -d 'Use exactly these hosts, in this ring order' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l layers -d 'Manual layer split over the chosen hosts in ring order' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l context -d 'Context tokens to budget for (GGUF models default to at most 8192); the requests served at once share them' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l parallel -d 'Requests served at once (each a sequence in every rank\'s KV cache)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l queue -d 'Requests that may wait while `--parallel` others run (429 beyond)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l port -d 'Ring port shared by all ranks (default: derived from the inputs)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l api-bind -d 'Address the API binds to (default: rank 0\'s address)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l api-port -d 'API port' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l max-tokens -d 'Most tokens a request generates when it sets no `max_tokens` (default 2048; a request may ask for more, up to the context limit)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l silence-limit -d 'Seconds a serving rank waits on a silent ring neighbour before it declares it lost (default 3; raised automatically on irregular links)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l loading-silence-limit -d 'Seconds a rank waits on a silent neighbour while the ring forms and loads (default 60)' -r
complete -c skulk -n "__fish_skulk_using_subcommand plan" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''
yaml\t''"
complete -c skulk -n "__fish_skulk_using_subcommand plan" -l out -d 'Also write the plan document to this file: YAML when its name ends in `.yaml` or `.yml`, JSON when `.json`, else as `-o` says (JSON for a table)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand plan" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand plan" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand plan" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand plan" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l known-hosts -d 'known_hosts file (default: ~/.ssh/known_hosts)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l timeout -d 'Seconds to wait for the ring to form and the API to answer' -r
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l api-key-file -d 'File holding the API bearer token (also: SKULK_API_KEY)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l remote-skulk -d 'Path of skulk on the hosts, and where `--install` puts it (default: ~/.local/bin/skulk if present, else skulk on the login PATH)' -r
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l inventory -d 'The inventory the plan was made from, to plan again without lost hosts (with `--watch`)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l grace -d 'Seconds a host may stay unreachable before the plan is made again without it (with `--watch`)' -r
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l drain -d 'Longest wait for requests in flight before moving back to the full plan, in seconds (with `--watch`)' -r
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l accept-new-host-keys -d 'Trust hosts missing from known_hosts and record their keys'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l install -d 'Copy this skulk binary to hosts where it is missing or differs'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l fetch -d 'Download the model on hosts that lack it'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l dry-run -d 'Print what would run where, start nothing'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l replace -d 'Stop a different plan running on the same hosts first'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l watch -d 'Stay in the foreground and keep the plan up: restart a failed ring, plan around a host lost for longer than `--grace` (with `--inventory`), move back when it returns. Ctrl-C or `skulk down` brings the ranks down'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -l keep-running -d 'Leave the ranks running when interrupted (with `--watch`; `skulk down` still brings them down)'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand apply" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "table\t''
json\t''
yaml\t''"
complete -c skulk -n "__fish_skulk_using_subcommand status" -l known-hosts -d 'known_hosts file (default: ~/.ssh/known_hosts)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand status" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand status" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand status" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand status" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand down" -l digest -d 'Also stop the runs of the plan with this digest (or its first 8 or more hex digits) on the plan\'s hosts' -r
complete -c skulk -n "__fish_skulk_using_subcommand down" -l timeout -d 'Seconds to wait for a graceful stop before killing' -r
complete -c skulk -n "__fish_skulk_using_subcommand down" -l known-hosts -d 'known_hosts file (default: ~/.ssh/known_hosts)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand down" -l purge -d 'Also remove the rank-local slice caches'
complete -c skulk -n "__fish_skulk_using_subcommand down" -l any -d 'Also stop every other skulk run on the plan\'s hosts (another plan\'s ring, e.g. after re-planning into the same file)'
complete -c skulk -n "__fish_skulk_using_subcommand down" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand down" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand down" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand down" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand logs" -l node -d 'Only this host' -r
complete -c skulk -n "__fish_skulk_using_subcommand logs" -l known-hosts -d 'known_hosts file (default: ~/.ssh/known_hosts)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand logs" -s f -l follow -d 'Keep printing new lines'
complete -c skulk -n "__fish_skulk_using_subcommand logs" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand logs" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand logs" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand logs" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l plan -d 'Plan document' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l node -d 'This host\'s name in the plan' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l rank -d 'This rank\'s number in the plan' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l secret-file -d 'File holding the ring secret (else read from SKULK_RING_SECRET or stdin)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l api-key-file -d 'File holding the API bearer token (else SKULK_API_KEY; rank 0 only)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l threads -d 'Compute threads (default: the plan\'s, else the host\'s cores)' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l gpu-layers -d 'Layers to offload to the GPU, a count or `all` (default: the plan\'s)' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l wire -d 'Number format of the hidden rows this rank sends: f32 is exact; f16 halves the bytes on the wire but rounds (output may differ from one process). Receivers read either' -r -f -a "f32\t''
f16\t''"
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l max-tokens -d 'Most tokens a request generates when it sets no `max_tokens` (default: the plan\'s, else 2048)' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l micro-batches -d 'Rank 0: micro-batches kept in the ring at once, each with a share of the running requests (default: one per machine of the ring, so every machine computes; ranks sharing a machine share its cores)' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l formation-timeout -d 'Seconds to wait for the ring to form' -r
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l cache-dir -d 'Directory for the rank-local slice cache (default ~/.cache/skulk/shards)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -l health-file -d 'File where the rank notes a slow ring neighbour while it is slow' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand run-shard" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -l plan -d 'Plan document' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -l node -d 'This host\'s name in the plan' -r
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand fetch-model" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand standby" -l plan -d 'Plan document (its API address and port are served)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand standby" -l retry-after -d 'Seconds clients are told to wait' -r
complete -c skulk -n "__fish_skulk_using_subcommand standby" -l lifetime -d 'Seconds until the listener exits by itself' -r
complete -c skulk -n "__fish_skulk_using_subcommand standby" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand standby" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand standby" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand standby" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -f -a "new" -d 'Derive a card from a GGUF file or a Hugging Face repository'
complete -c skulk -n "__fish_skulk_using_subcommand card; and not __fish_seen_subcommand_from new help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -l from-gguf -d 'Local GGUF file (only its header is read)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -l from-hf -d 'Hugging Face repository `ORG/NAME`' -r
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -l revision -d 'Repository revision (branch, tag or commit)' -r
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -l gguf-file -d 'GGUF file in the repository (default: the preferred quant)' -r
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -l model-id -d 'Model id of the card (default: `local/<file stem>` or the repository)' -r
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -s o -l output -d 'Output format' -r -f -a "yaml\t''
json\t''"
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from new" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from help" -f -a "new" -d 'Derive a card from a GGUF file or a Hugging Face repository'
complete -c skulk -n "__fish_skulk_using_subcommand card; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -f -a "add" -d 'Put a GGUF file of this machine where a card\'s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
complete -c skulk -n "__fish_skulk_using_subcommand model; and not __fish_seen_subcommand_from add help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -l card -d 'The model\'s card' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -l model-dir -d 'The model directory, read as an inventory host\'s `modelDir` (`~` or a relative path: under the home directory)' -r
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "add" -d 'Put a GGUF file of this machine where a card\'s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
complete -c skulk -n "__fish_skulk_using_subcommand model; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -f -a "probe" -d 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and not __fish_seen_subcommand_from probe help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -s i -l identity -d 'SSH identity file' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -l known-hosts -d 'known_hosts file (default: ~/.ssh/known_hosts)' -r -F
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -l local -d 'Also probe this machine, without SSH: an entry with `connection: local`'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -l accept-new-host-keys -d 'Trust hosts missing from known_hosts and record their keys'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from probe" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "probe" -d 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
complete -c skulk -n "__fish_skulk_using_subcommand inventory; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand completions" -s q -l quiet -d 'Print only warnings and errors'
complete -c skulk -n "__fish_skulk_using_subcommand completions" -s v -l verbose -d 'Also print every command run on a host'
complete -c skulk -n "__fish_skulk_using_subcommand completions" -s h -l help -d 'Print help'
complete -c skulk -n "__fish_skulk_using_subcommand completions" -s V -l version -d 'Print version'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "validate" -d 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "schema" -d 'Print a generated JSON schema'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "plan" -d 'Place a model on an inventory: ranks, layer ranges, ports, memory'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "apply" -d 'Start every rank of a plan (over SSH or locally) and wait for the API'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "status" -d 'Show the state of every rank of a plan'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "down" -d 'Stop every rank of a plan and clean up'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "logs" -d 'Show the ranks\' logs'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "run-shard" -d 'Run one rank of a plan (started by `skulk apply`, or by hand)'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "fetch-model" -d 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "standby" -d 'Answer 503 with Retry-After at a plan\'s API address (what `skulk apply --watch` runs on the API host while no ring serves)'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "card" -d 'Create and inspect model cards'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "model" -d 'Put model files where ranks look for them'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "inventory" -d 'Inspect hosts for an inventory'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c skulk -n "__fish_skulk_using_subcommand help; and not __fish_seen_subcommand_from validate schema plan apply status down logs run-shard fetch-model standby card model inventory completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c skulk -n "__fish_skulk_using_subcommand help; and __fish_seen_subcommand_from card" -f -a "new" -d 'Derive a card from a GGUF file or a Hugging Face repository'
complete -c skulk -n "__fish_skulk_using_subcommand help; and __fish_seen_subcommand_from model" -f -a "add" -d 'Put a GGUF file of this machine where a card\'s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
complete -c skulk -n "__fish_skulk_using_subcommand help; and __fish_seen_subcommand_from inventory" -f -a "probe" -d 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
