
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'skulk' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'skulk'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'skulk' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print a generated JSON schema')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Place a model on an inventory: ranks, layer ranges, ports, memory')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Start every rank of a plan (over SSH or locally) and wait for the API')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the state of every rank of a plan')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop every rank of a plan and clean up')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Show the ranks'' logs')
            [CompletionResult]::new('run-shard', 'run-shard', [CompletionResultType]::ParameterValue, 'Run one rank of a plan (started by `skulk apply`, or by hand)')
            [CompletionResult]::new('fetch-model', 'fetch-model', [CompletionResultType]::ParameterValue, 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)')
            [CompletionResult]::new('standby', 'standby', [CompletionResultType]::ParameterValue, 'Answer 503 with Retry-After at a plan''s API address (what `skulk apply --watch` runs on the API host while no ring serves)')
            [CompletionResult]::new('card', 'card', [CompletionResultType]::ParameterValue, 'Create and inspect model cards')
            [CompletionResult]::new('model', 'model', [CompletionResultType]::ParameterValue, 'Put model files where ranks look for them')
            [CompletionResult]::new('inventory', 'inventory', [CompletionResultType]::ParameterValue, 'Inspect hosts for an inventory')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;validate' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'How problems are reported')
            [CompletionResult]::new('--deny-warnings', '--deny-warnings', [CompletionResultType]::ParameterName, 'Exit 1 when there are warnings')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;schema' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;plan' {
            [CompletionResult]::new('--card', '--card', [CompletionResultType]::ParameterName, 'Model card file (YAML, JSON or TOML)')
            [CompletionResult]::new('--inventory', '--inventory', [CompletionResultType]::ParameterName, 'Inventory file (YAML or JSON)')
            [CompletionResult]::new('--sharding', '--sharding', [CompletionResultType]::ParameterName, 'How the model is split')
            [CompletionResult]::new('--instance', '--instance', [CompletionResultType]::ParameterName, 'Instance kind (jaccl needs RDMA interfaces in the inventory)')
            [CompletionResult]::new('--min-nodes', '--min-nodes', [CompletionResultType]::ParameterName, 'Use at least this many hosts')
            [CompletionResult]::new('--exclude', '--exclude', [CompletionResultType]::ParameterName, 'Never use this host (repeatable)')
            [CompletionResult]::new('--nodes', '--nodes', [CompletionResultType]::ParameterName, 'Use exactly these hosts, in this ring order')
            [CompletionResult]::new('--layers', '--layers', [CompletionResultType]::ParameterName, 'Manual layer split over the chosen hosts in ring order')
            [CompletionResult]::new('--context', '--context', [CompletionResultType]::ParameterName, 'Context tokens to budget for (GGUF models default to at most 8192); the requests served at once share them')
            [CompletionResult]::new('--parallel', '--parallel', [CompletionResultType]::ParameterName, 'Requests served at once (each a sequence in every rank''s KV cache)')
            [CompletionResult]::new('--queue', '--queue', [CompletionResultType]::ParameterName, 'Requests that may wait while `--parallel` others run (429 beyond)')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Ring port shared by all ranks (default: derived from the inputs)')
            [CompletionResult]::new('--api-bind', '--api-bind', [CompletionResultType]::ParameterName, 'Address the API binds to (default: rank 0''s address)')
            [CompletionResult]::new('--api-port', '--api-port', [CompletionResultType]::ParameterName, 'API port')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'Most tokens a request generates when it sets no `max_tokens` (default 2048; a request may ask for more, up to the context limit)')
            [CompletionResult]::new('--silence-limit', '--silence-limit', [CompletionResultType]::ParameterName, 'Seconds a serving rank waits on a silent ring neighbour before it declares it lost (default 3; raised automatically on irregular links)')
            [CompletionResult]::new('--loading-silence-limit', '--loading-silence-limit', [CompletionResultType]::ParameterName, 'Seconds a rank waits on a silent neighbour while the ring forms and loads (default 60)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Also write the plan document to this file: YAML when its name ends in `.yaml` or `.yml`, JSON when `.json`, else as `-o` says (JSON for a table)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;apply' {
            [CompletionResult]::new('--known-hosts', '--known-hosts', [CompletionResultType]::ParameterName, 'known_hosts file (default: ~/.ssh/known_hosts)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the ring to form and the API to answer')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'File holding the API bearer token (also: SKULK_API_KEY)')
            [CompletionResult]::new('--remote-skulk', '--remote-skulk', [CompletionResultType]::ParameterName, 'Path of skulk on the hosts, and where `--install` puts it (default: ~/.local/bin/skulk if present, else skulk on the login PATH)')
            [CompletionResult]::new('--inventory', '--inventory', [CompletionResultType]::ParameterName, 'The inventory the plan was made from, to plan again without lost hosts (with `--watch`)')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'Seconds a host may stay unreachable before the plan is made again without it (with `--watch`)')
            [CompletionResult]::new('--drain', '--drain', [CompletionResultType]::ParameterName, 'Longest wait for requests in flight before moving back to the full plan, in seconds (with `--watch`)')
            [CompletionResult]::new('--accept-new-host-keys', '--accept-new-host-keys', [CompletionResultType]::ParameterName, 'Trust hosts missing from known_hosts and record their keys')
            [CompletionResult]::new('--install', '--install', [CompletionResultType]::ParameterName, 'Copy this skulk binary to hosts where it is missing or differs')
            [CompletionResult]::new('--fetch', '--fetch', [CompletionResultType]::ParameterName, 'Download the model on hosts that lack it')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would run where, start nothing')
            [CompletionResult]::new('--replace', '--replace', [CompletionResultType]::ParameterName, 'Stop a different plan running on the same hosts first')
            [CompletionResult]::new('--watch', '--watch', [CompletionResultType]::ParameterName, 'Stay in the foreground and keep the plan up: restart a failed ring, plan around a host lost for longer than `--grace` (with `--inventory`), move back when it returns. Ctrl-C or `skulk down` brings the ranks down')
            [CompletionResult]::new('--keep-running', '--keep-running', [CompletionResultType]::ParameterName, 'Leave the ranks running when interrupted (with `--watch`; `skulk down` still brings them down)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;status' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--known-hosts', '--known-hosts', [CompletionResultType]::ParameterName, 'known_hosts file (default: ~/.ssh/known_hosts)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;down' {
            [CompletionResult]::new('--digest', '--digest', [CompletionResultType]::ParameterName, 'Also stop the runs of the plan with this digest (or its first 8 or more hex digits) on the plan''s hosts')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for a graceful stop before killing')
            [CompletionResult]::new('--known-hosts', '--known-hosts', [CompletionResultType]::ParameterName, 'known_hosts file (default: ~/.ssh/known_hosts)')
            [CompletionResult]::new('--purge', '--purge', [CompletionResultType]::ParameterName, 'Also remove the rank-local slice caches')
            [CompletionResult]::new('--any', '--any', [CompletionResultType]::ParameterName, 'Also stop every other skulk run on the plan''s hosts (another plan''s ring, e.g. after re-planning into the same file)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;logs' {
            [CompletionResult]::new('--node', '--node', [CompletionResultType]::ParameterName, 'Only this host')
            [CompletionResult]::new('--known-hosts', '--known-hosts', [CompletionResultType]::ParameterName, 'known_hosts file (default: ~/.ssh/known_hosts)')
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Keep printing new lines')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep printing new lines')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;run-shard' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan document')
            [CompletionResult]::new('--node', '--node', [CompletionResultType]::ParameterName, 'This host''s name in the plan')
            [CompletionResult]::new('--rank', '--rank', [CompletionResultType]::ParameterName, 'This rank''s number in the plan')
            [CompletionResult]::new('--secret-file', '--secret-file', [CompletionResultType]::ParameterName, 'File holding the ring secret (else read from SKULK_RING_SECRET or stdin)')
            [CompletionResult]::new('--api-key-file', '--api-key-file', [CompletionResultType]::ParameterName, 'File holding the API bearer token (else SKULK_API_KEY; rank 0 only)')
            [CompletionResult]::new('--threads', '--threads', [CompletionResultType]::ParameterName, 'Compute threads (default: the plan''s, else the host''s cores)')
            [CompletionResult]::new('--gpu-layers', '--gpu-layers', [CompletionResultType]::ParameterName, 'Layers to offload to the GPU, a count or `all` (default: the plan''s)')
            [CompletionResult]::new('--wire', '--wire', [CompletionResultType]::ParameterName, 'Number format of the hidden rows this rank sends: f32 is exact; f16 halves the bytes on the wire but rounds (output may differ from one process). Receivers read either')
            [CompletionResult]::new('--max-tokens', '--max-tokens', [CompletionResultType]::ParameterName, 'Most tokens a request generates when it sets no `max_tokens` (default: the plan''s, else 2048)')
            [CompletionResult]::new('--micro-batches', '--micro-batches', [CompletionResultType]::ParameterName, 'Rank 0: micro-batches kept in the ring at once, each with a share of the running requests (default: one per machine of the ring, so every machine computes; ranks sharing a machine share its cores)')
            [CompletionResult]::new('--formation-timeout', '--formation-timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for the ring to form')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Directory for the rank-local slice cache (default ~/.cache/skulk/shards)')
            [CompletionResult]::new('--health-file', '--health-file', [CompletionResultType]::ParameterName, 'File where the rank notes a slow ring neighbour while it is slow')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;fetch-model' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan document')
            [CompletionResult]::new('--node', '--node', [CompletionResultType]::ParameterName, 'This host''s name in the plan')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;standby' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan document (its API address and port are served)')
            [CompletionResult]::new('--retry-after', '--retry-after', [CompletionResultType]::ParameterName, 'Seconds clients are told to wait')
            [CompletionResult]::new('--lifetime', '--lifetime', [CompletionResultType]::ParameterName, 'Seconds until the listener exits by itself')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;card' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Derive a card from a GGUF file or a Hugging Face repository')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;card;new' {
            [CompletionResult]::new('--from-gguf', '--from-gguf', [CompletionResultType]::ParameterName, 'Local GGUF file (only its header is read)')
            [CompletionResult]::new('--from-hf', '--from-hf', [CompletionResultType]::ParameterName, 'Hugging Face repository `ORG/NAME`')
            [CompletionResult]::new('--revision', '--revision', [CompletionResultType]::ParameterName, 'Repository revision (branch, tag or commit)')
            [CompletionResult]::new('--gguf-file', '--gguf-file', [CompletionResultType]::ParameterName, 'GGUF file in the repository (default: the preferred quant)')
            [CompletionResult]::new('--model-id', '--model-id', [CompletionResultType]::ParameterName, 'Model id of the card (default: `local/<file stem>` or the repository)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;card;help' {
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Derive a card from a GGUF file or a Hugging Face repository')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;card;help;new' {
            break
        }
        'skulk;card;help;help' {
            break
        }
        'skulk;model' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;model;add' {
            [CompletionResult]::new('--card', '--card', [CompletionResultType]::ParameterName, 'The model''s card')
            [CompletionResult]::new('--model-dir', '--model-dir', [CompletionResultType]::ParameterName, 'The model directory, read as an inventory host''s `modelDir` (`~` or a relative path: under the home directory)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;model;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;model;help;add' {
            break
        }
        'skulk;model;help;help' {
            break
        }
        'skulk;inventory' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;inventory;probe' {
            [CompletionResult]::new('-i', '-i', [CompletionResultType]::ParameterName, 'SSH identity file')
            [CompletionResult]::new('--identity', '--identity', [CompletionResultType]::ParameterName, 'SSH identity file')
            [CompletionResult]::new('--known-hosts', '--known-hosts', [CompletionResultType]::ParameterName, 'known_hosts file (default: ~/.ssh/known_hosts)')
            [CompletionResult]::new('--local', '--local', [CompletionResultType]::ParameterName, 'Also probe this machine, without SSH: an entry with `connection: local`')
            [CompletionResult]::new('--accept-new-host-keys', '--accept-new-host-keys', [CompletionResultType]::ParameterName, 'Trust hosts missing from known_hosts and record their keys')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;inventory;help' {
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;inventory;help;probe' {
            break
        }
        'skulk;inventory;help;help' {
            break
        }
        'skulk;completions' {
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only warnings and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Also print every command run on a host')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'skulk;help' {
            [CompletionResult]::new('validate', 'validate', [CompletionResultType]::ParameterValue, 'Check model-card and inventory files (YAML, JSON, TOML) against the schema and semantic rules')
            [CompletionResult]::new('schema', 'schema', [CompletionResultType]::ParameterValue, 'Print a generated JSON schema')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'Place a model on an inventory: ranks, layer ranges, ports, memory')
            [CompletionResult]::new('apply', 'apply', [CompletionResultType]::ParameterValue, 'Start every rank of a plan (over SSH or locally) and wait for the API')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the state of every rank of a plan')
            [CompletionResult]::new('down', 'down', [CompletionResultType]::ParameterValue, 'Stop every rank of a plan and clean up')
            [CompletionResult]::new('logs', 'logs', [CompletionResultType]::ParameterValue, 'Show the ranks'' logs')
            [CompletionResult]::new('run-shard', 'run-shard', [CompletionResultType]::ParameterValue, 'Run one rank of a plan (started by `skulk apply`, or by hand)')
            [CompletionResult]::new('fetch-model', 'fetch-model', [CompletionResultType]::ParameterValue, 'Download the model of one rank of a plan onto this host (what `skulk apply --fetch` runs on each host that lacks it)')
            [CompletionResult]::new('standby', 'standby', [CompletionResultType]::ParameterValue, 'Answer 503 with Retry-After at a plan''s API address (what `skulk apply --watch` runs on the API host while no ring serves)')
            [CompletionResult]::new('card', 'card', [CompletionResultType]::ParameterValue, 'Create and inspect model cards')
            [CompletionResult]::new('model', 'model', [CompletionResultType]::ParameterValue, 'Put model files where ranks look for them')
            [CompletionResult]::new('inventory', 'inventory', [CompletionResultType]::ParameterValue, 'Inspect hosts for an inventory')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'skulk;help;validate' {
            break
        }
        'skulk;help;schema' {
            break
        }
        'skulk;help;plan' {
            break
        }
        'skulk;help;apply' {
            break
        }
        'skulk;help;status' {
            break
        }
        'skulk;help;down' {
            break
        }
        'skulk;help;logs' {
            break
        }
        'skulk;help;run-shard' {
            break
        }
        'skulk;help;fetch-model' {
            break
        }
        'skulk;help;standby' {
            break
        }
        'skulk;help;card' {
            [CompletionResult]::new('new', 'new', [CompletionResultType]::ParameterValue, 'Derive a card from a GGUF file or a Hugging Face repository')
            break
        }
        'skulk;help;card;new' {
            break
        }
        'skulk;help;model' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Put a GGUF file of this machine where a card''s ranks look for it (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied')
            break
        }
        'skulk;help;model;add' {
            break
        }
        'skulk;help;inventory' {
            [CompletionResult]::new('probe', 'probe', [CompletionResultType]::ParameterValue, 'Connect to hosts over SSH (or look at this machine with `--local`) and print inventory entries for them')
            break
        }
        'skulk;help;inventory;probe' {
            break
        }
        'skulk;help;completions' {
            break
        }
        'skulk;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
