
use builtin;
use str;

set edit:completion:arg-completer[skulk] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'skulk'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'skulk'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand validate 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules'
            cand schema 'Print a generated JSON schema'
            cand plan 'Place a model on an inventory: ranks, layer ranges, ports, memory'
            cand apply 'Start every rank of a plan (over SSH or locally) and wait for the API'
            cand status 'Show the state of every rank of a plan'
            cand down 'Stop every rank of a plan and clean up'
            cand logs 'Show the ranks'' logs'
            cand run-shard 'Run one rank of a plan (started by `skulk apply`, or by hand)'
            cand fetch-model 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)'
            cand standby 'Answer 503 with Retry-After at a plan''s API address (what `skulk apply --watch` runs on the API host while no ring serves)'
            cand card 'Create and inspect model cards'
            cand model 'Put model files where ranks look for them'
            cand inventory 'Inspect hosts for an inventory'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;validate'= {
            cand --format 'How problems are reported'
            cand --deny-warnings 'Exit 1 when there are warnings'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;schema'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;plan'= {
            cand --card 'Model card file (YAML, JSON or TOML)'
            cand --inventory 'Inventory file (YAML or JSON)'
            cand --sharding 'How the model is split'
            cand --instance 'Instance kind (jaccl needs RDMA interfaces in the inventory)'
            cand --min-nodes 'Use at least this many hosts'
            cand --exclude 'Never use this host (repeatable)'
            cand --nodes 'Use exactly these hosts, in this ring order'
            cand --layers 'Manual layer split over the chosen hosts in ring order'
            cand --context 'Context tokens to budget for (GGUF models default to at most 8192); the requests served at once share them'
            cand --parallel 'Requests served at once (each a sequence in every rank''s KV cache)'
            cand --queue 'Requests that may wait while `--parallel` others run (429 beyond)'
            cand --port 'Ring port shared by all ranks (default: derived from the inputs)'
            cand --api-bind 'Address the API binds to (default: rank 0''s address)'
            cand --api-port 'API port'
            cand --max-tokens 'Most tokens a request generates when it sets no `max_tokens` (default 2048; a request may ask for more, up to the context limit)'
            cand --silence-limit 'Seconds a serving rank waits on a silent ring neighbour before it declares it lost (default 3; raised automatically on irregular links)'
            cand --loading-silence-limit 'Seconds a rank waits on a silent neighbour while the ring forms and loads (default 60)'
            cand -o 'Output format'
            cand --output 'Output format'
            cand --out 'Also write the plan document to this file: YAML when its name ends in `.yaml` or `.yml`, JSON when `.json`, else as `-o` says (JSON for a table)'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;apply'= {
            cand --known-hosts 'known_hosts file (default: ~/.ssh/known_hosts)'
            cand --timeout 'Seconds to wait for the ring to form and the API to answer'
            cand --api-key-file 'File holding the API bearer token (also: SKULK_API_KEY)'
            cand --remote-skulk 'Path of skulk on the hosts, and where `--install` puts it (default: ~/.local/bin/skulk if present, else skulk on the login PATH)'
            cand --inventory 'The inventory the plan was made from, to plan again without lost hosts (with `--watch`)'
            cand --grace 'Seconds a host may stay unreachable before the plan is made again without it (with `--watch`)'
            cand --drain 'Longest wait for requests in flight before moving back to the full plan, in seconds (with `--watch`)'
            cand --accept-new-host-keys 'Trust hosts missing from known_hosts and record their keys'
            cand --install 'Copy this skulk binary to hosts where it is missing or differs'
            cand --fetch 'Download the model on hosts that lack it'
            cand --dry-run 'Print what would run where, start nothing'
            cand --replace 'Stop a different plan running on the same hosts first'
            cand --watch 'Stay in the foreground and keep the plan up: restart a failed ring, plan around a host lost for longer than `--grace` (with `--inventory`), move back when it returns. Ctrl-C or `skulk down` brings the ranks down'
            cand --keep-running 'Leave the ranks running when interrupted (with `--watch`; `skulk down` still brings them down)'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;status'= {
            cand -o 'Output format'
            cand --output 'Output format'
            cand --known-hosts 'known_hosts file (default: ~/.ssh/known_hosts)'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;down'= {
            cand --digest 'Also stop the runs of the plan with this digest (or its first 8 or more hex digits) on the plan''s hosts'
            cand --timeout 'Seconds to wait for a graceful stop before killing'
            cand --known-hosts 'known_hosts file (default: ~/.ssh/known_hosts)'
            cand --purge 'Also remove the rank-local slice caches'
            cand --any 'Also stop every other skulk run on the plan''s hosts (another plan''s ring, e.g. after re-planning into the same file)'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;logs'= {
            cand --node 'Only this host'
            cand --known-hosts 'known_hosts file (default: ~/.ssh/known_hosts)'
            cand -f 'Keep printing new lines'
            cand --follow 'Keep printing new lines'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;run-shard'= {
            cand --plan 'Plan document'
            cand --node 'This host''s name in the plan'
            cand --rank 'This rank''s number in the plan'
            cand --secret-file 'File holding the ring secret (else read from SKULK_RING_SECRET or stdin)'
            cand --api-key-file 'File holding the API bearer token (else SKULK_API_KEY; rank 0 only)'
            cand --threads 'Compute threads (default: the plan''s, else the host''s cores)'
            cand --gpu-layers 'Layers to offload to the GPU, a count or `all` (default: the plan''s)'
            cand --wire 'Number format of the hidden rows this rank sends: f32 is exact; f16 halves the bytes on the wire but rounds (output may differ from one process). Receivers read either'
            cand --max-tokens 'Most tokens a request generates when it sets no `max_tokens` (default: the plan''s, else 2048)'
            cand --micro-batches 'Rank 0: micro-batches kept in the ring at once, each with a share of the running requests (default: one per machine of the ring, so every machine computes; ranks sharing a machine share its cores)'
            cand --formation-timeout 'Seconds to wait for the ring to form'
            cand --cache-dir 'Directory for the rank-local slice cache (default ~/.cache/skulk/shards)'
            cand --health-file 'File where the rank notes a slow ring neighbour while it is slow'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;fetch-model'= {
            cand --plan 'Plan document'
            cand --node 'This host''s name in the plan'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;standby'= {
            cand --plan 'Plan document (its API address and port are served)'
            cand --retry-after 'Seconds clients are told to wait'
            cand --lifetime 'Seconds until the listener exits by itself'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;card'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand new 'Derive a card from a GGUF file or a Hugging Face repository'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;card;new'= {
            cand --from-gguf 'Local GGUF file (only its header is read)'
            cand --from-hf 'Hugging Face repository `ORG/NAME`'
            cand --revision 'Repository revision (branch, tag or commit)'
            cand --gguf-file 'GGUF file in the repository (default: the preferred quant)'
            cand --model-id 'Model id of the card (default: `local/<file stem>` or the repository)'
            cand -o 'Output format'
            cand --output 'Output format'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;card;help'= {
            cand new 'Derive a card from a GGUF file or a Hugging Face repository'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;card;help;new'= {
        }
        &'skulk;card;help;help'= {
        }
        &'skulk;model'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;model;add'= {
            cand --card 'The model''s card'
            cand --model-dir 'The model directory, read as an inventory host''s `modelDir` (`~` or a relative path: under the home directory)'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;model;help'= {
            cand add 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;model;help;add'= {
        }
        &'skulk;model;help;help'= {
        }
        &'skulk;inventory'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand probe 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;inventory;probe'= {
            cand -i 'SSH identity file'
            cand --identity 'SSH identity file'
            cand --known-hosts 'known_hosts file (default: ~/.ssh/known_hosts)'
            cand --local 'Also probe this machine, without SSH: an entry with `connection: local`'
            cand --accept-new-host-keys 'Trust hosts missing from known_hosts and record their keys'
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;inventory;help'= {
            cand probe 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;inventory;help;probe'= {
        }
        &'skulk;inventory;help;help'= {
        }
        &'skulk;completions'= {
            cand -q 'Print only warnings and errors'
            cand --quiet 'Print only warnings and errors'
            cand -v 'Also print every command run on a host'
            cand --verbose 'Also print every command run on a host'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'skulk;help'= {
            cand validate 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules'
            cand schema 'Print a generated JSON schema'
            cand plan 'Place a model on an inventory: ranks, layer ranges, ports, memory'
            cand apply 'Start every rank of a plan (over SSH or locally) and wait for the API'
            cand status 'Show the state of every rank of a plan'
            cand down 'Stop every rank of a plan and clean up'
            cand logs 'Show the ranks'' logs'
            cand run-shard 'Run one rank of a plan (started by `skulk apply`, or by hand)'
            cand fetch-model 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)'
            cand standby 'Answer 503 with Retry-After at a plan''s API address (what `skulk apply --watch` runs on the API host while no ring serves)'
            cand card 'Create and inspect model cards'
            cand model 'Put model files where ranks look for them'
            cand inventory 'Inspect hosts for an inventory'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'skulk;help;validate'= {
        }
        &'skulk;help;schema'= {
        }
        &'skulk;help;plan'= {
        }
        &'skulk;help;apply'= {
        }
        &'skulk;help;status'= {
        }
        &'skulk;help;down'= {
        }
        &'skulk;help;logs'= {
        }
        &'skulk;help;run-shard'= {
        }
        &'skulk;help;fetch-model'= {
        }
        &'skulk;help;standby'= {
        }
        &'skulk;help;card'= {
            cand new 'Derive a card from a GGUF file or a Hugging Face repository'
        }
        &'skulk;help;card;new'= {
        }
        &'skulk;help;model'= {
            cand add 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied'
        }
        &'skulk;help;model;add'= {
        }
        &'skulk;help;inventory'= {
            cand probe 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them'
        }
        &'skulk;help;inventory;probe'= {
        }
        &'skulk;help;completions'= {
        }
        &'skulk;help;help'= {
        }
    ]
    $completions[$command]
}
