import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { SandboxShiftClient, DEFAULT_URL } from '../client/client.js';
import type { Role } from '../auth/principal.js';
import { ConfigError, configPath, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { cancelCommand, guarded, logsCommand, tasksCommand, workspaceCreateCommand, workspaceDeleteCommand, workspaceGetCommand, workspaceListCommand } from './commands.js';
import { EXIT } from './exit-codes.js';
import { runCommand, type RunOptions } from './run.js';

const TASK_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'error'] as const;

function int(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The words after the command name in the original argv (the server commands parse their own). */
function rest(argv: readonly string[], name: string): string[] {
  const i = argv.indexOf(name);
  return i >= 0 ? argv.slice(i + 1) : [...argv];
}

const write = (s: string) => process.stdout.write(s);
const writeErr = (s: string) => process.stderr.write(s);

function configOrExit(args: readonly string[]) {
  try {
    return loadConfig(configPath(args, process.env));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    writeErr(`sandboxshift: ${err.message}\n`);
    return null;
  }
}

/**
 * The `sandboxshift` command line. Client commands reach a server at --url / SANDBOXSHIFT_URL with
 * the key from --key / SANDBOXSHIFT_KEY; `serve`, `check-config` and `images` work on the local
 * configuration. Every action resolves to the process exit code (-1: keep running).
 */
export function buildProgram(argv: readonly string[], done: (code: number) => void): Command {
  const program = new Command('sandboxshift')
    .description('SandboxShift: run untrusted shell tasks in hardened containers, and reach a server that does')
    .addOption(new Option('--url <url>', 'server URL').env('SANDBOXSHIFT_URL').default(DEFAULT_URL))
    .addOption(new Option('--key <key>', 'API key (sent as Authorization: Bearer)').env('SANDBOXSHIFT_KEY'))
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();

  const client = (cmd: Command) => {
    const o = cmd.optsWithGlobals<{ url: string; key?: string }>();
    return new SandboxShiftClient({ url: o.url, apiKey: o.key });
  };
  const act = (fn: () => Promise<number>) => guarded(fn, writeErr).then(done);

  program
    .command('serve')
    .description('run the server (also with no command, or when the first argument is --config)')
    .option('--config <file>', 'configuration file (also SANDBOXSHIFT_CONFIG; none: the embedded defaults)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      process.argv = [process.argv[0]!, process.argv[1]!, ...rest(argv, 'serve')];
      await import('../server.js');
      done(-1); // the server keeps the process alive and exits on its own
    });

  program
    .command('check-config')
    .description('validate a configuration and print the result')
    .option('--config <file>', 'configuration file (also SANDBOXSHIFT_CONFIG)')
    .action(async () => {
      const config = configOrExit(rest(argv, 'check-config'));
      if (!config) return done(2);
      write(`${JSON.stringify(config, null, 2)}\n`);
      const { exposureRefusal } = await import('../auth/exposure.js');
      const { hasAnyKey } = await import('../auth/server-keys.js');
      const refusal = exposureRefusal(config.listen.host, hasAnyKey(config));
      if (refusal) {
        writeErr(`sandboxshift: the server would refuse to start: ${refusal}\n`);
        return done(2);
      }
      done(0);
    });

  const keys = program
    .command('keys')
    .description("API keys in the server's database: create, list, revoke (works whether or not the server runs)");
  const keysAction = (fn: (config: Config, mod: typeof import('./keys.js'), io: import('./keys.js').KeysIo) => number) => async (opts: { config?: string }) => {
    const config = configOrExit(opts.config ? ['--config', opts.config] : []);
    if (!config) return done(2);
    const mod = await import('./keys.js');
    done(fn(config, mod, { out: write, err: writeErr, onEvent: mod.auditKeyEvents(config, writeErr) }));
  };
  keys
    .command('create')
    .description('create a key for a tenant; prints it once, alone on the last line (only its SHA-256 is stored)')
    .requiredOption('--tenant <name>', 'tenant the key acts for')
    .addOption(new Option('--role <role>', 'admin sees every tenant').choices(['admin', 'user']).default('user'))
    .option('--config <file>', 'configuration file of the server (also SANDBOXSHIFT_CONFIG)')
    .action((opts: { tenant: string; role: Role; config?: string }) => keysAction((c, m, io) => m.keysCreate(c, opts, io))(opts));
  keys
    .command('list')
    .description('list keys: id, tenant, role, created, last used (never the key)')
    .option('--all', 'include revoked keys')
    .option('--json', 'print {"keys": [...]} as JSON')
    .option('--config <file>', 'configuration file of the server (also SANDBOXSHIFT_CONFIG)')
    .action((opts: { all?: boolean; json?: boolean; config?: string }) => keysAction((c, m, io) => m.keysList(c, opts, io))(opts));
  keys
    .command('revoke')
    .description('revoke a key: a running server answers it 401 from the next request on')
    .argument('<id>', 'key id (from keys list)')
    .option('--config <file>', 'configuration file of the server (also SANDBOXSHIFT_CONFIG)')
    .action((id: string, opts: { config?: string }) => keysAction((c, m, io) => m.keysRevoke(c, id, io))(opts));

  program
    .command('images')
    .description('configured runtime images: present or missing, and how to build each missing one; whether runsc is installed and starts a hardened gVisor container (exit 1 when a default image is missing or the default isolation cannot start one)')
    .option('--config <file>', 'configuration file (also SANDBOXSHIFT_CONFIG)')
    .option('--socket <path>', 'Podman API socket')
    .option('--gvisor', 'also start a hardened gVisor container when engine.allowedIsolation does not list gvisor')
    .option('--json', 'print the report as JSON')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async () => {
      const args = rest(argv, 'images');
      const config = configOrExit(args);
      if (!config) return done(2);
      const { imagesCommand, UsageError } = await import('../images-command.js');
      const code = await imagesCommand(config, args, { env: process.env, cwd: process.cwd(), out: write }).catch((err: unknown) => {
        if (!(err instanceof UsageError)) throw err;
        writeErr(`${err.message}\n`);
        return EXIT.USAGE;
      });
      done(code);
    });

  program
    .command('audit')
    .description('the audit log of the server configured by --config')
    .command('verify')
    .description('check the audit chain across its rotated files: exit 0 when it holds, 1 naming the first record edited, removed or moved')
    .option('--config <file>', 'configuration file (also SANDBOXSHIFT_CONFIG)')
    .action(async () => {
      const config = configOrExit(rest(argv, 'verify'));
      if (!config) return done(2);
      const { auditVerifyCommand } = await import('../audit/command.js');
      done(await auditVerifyCommand(config, { cwd: process.cwd(), out: write, err: writeErr }));
    });

  program
    .command('run')
    .description('run COMMAND on the server with DIR as its workspace; exits with the task exit code')
    .argument('<dir>', 'directory to upload (.gitignore honoured, links never followed)')
    .argument('<command...>', 'after --: one word is a shell command line; several are quoted and joined')
    .option('--allow <host>', 'egress allowlist entry (repeatable; host or *.suffix)', collect)
    .option('--timeout <seconds>', 'wall-clock limit', int('--timeout', 1))
    .option('--memory-mb <mb>', 'memory limit in MB', int('--memory-mb', 16))
    .option('--cpus <n>', 'CPU limit', positive)
    .option('--env <K=V>', 'environment variable (repeatable)', collect)
    .option('--image <image>', 'image from the server table (default: auto-detected)')
    .option('--workspace <id>', 'run on an existing workspace instead of uploading DIR')
    .option('--download <dir>', 'after the task, write the files it created or changed into this directory')
    .option('--keep-workspace', 'keep the uploaded workspace (it is deleted after the run otherwise)')
    .option('--stdin', "forward this process's stdin to the task")
    .option('--json', 'print one JSON result line instead of the streams')
    .option('-q, --quiet', 'no progress or notices on stderr')
    .addHelpText('after', '\nExit codes: the task exit code, or 64 usage, 69 unreachable, 70 task error, 124 timeout, 125 refused, 130 cancelled, 137 OOM.')
    .action((dir: string, words: string[], opts: RunOptions, cmd: Command) =>
      act(() => runCommand(client(cmd), dir, words, opts, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin })),
    );

  program
    .command('tasks')
    .description('list tasks, newest first')
    .addOption(new Option('--status <status>', 'only tasks with this status').choices(TASK_STATUSES))
    .option('--limit <n>', 'how many', int('--limit', 1))
    .option('--json', 'print the page as JSON')
    .action((opts: { status?: (typeof TASK_STATUSES)[number]; limit?: number; json?: boolean }, cmd: Command) =>
      act(() => tasksCommand(client(cmd), opts, write)),
    );

  program
    .command('logs')
    .description("print a task's output: stdout to stdout, stderr to stderr")
    .argument('<id>', 'task id')
    .option('-f, --follow', 'keep printing until the task ends')
    .action((id: string, opts: { follow?: boolean }, cmd: Command) => act(() => logsCommand(client(cmd), id, opts, { stdout: write, stderr: writeErr })));

  program
    .command('cancel')
    .description('cancel a queued or running task')
    .argument('<id>', 'task id')
    .action((id: string, _opts: unknown, cmd: Command) => act(() => cancelCommand(client(cmd), id, write)));

  const ws = program.command('workspaces').description('create, list, show and delete workspaces');
  ws.command('list')
    .description('list workspaces, newest first')
    .option('--limit <n>', 'page size', (v) => Number(v))
    .option('--json', 'print the page as JSON')
    .action((opts: { limit?: number; json?: boolean }, cmd: Command) => act(() => workspaceListCommand(client(cmd), opts, write)));
  ws.command('create')
    .description('create a workspace from a directory (packed like run) or an archive (.tar, .tar.gz/.tgz, .zip)')
    .argument('<path>', 'directory or archive file')
    .option('--json', 'print the workspace as JSON')
    .option('-q, --quiet', 'no progress or notices on stderr')
    .action((path: string, opts: { json?: boolean; quiet?: boolean }, cmd: Command) =>
      act(() => workspaceCreateCommand(client(cmd), path, opts, { stdout: write, stderr: writeErr, tty: process.stderr })),
    );
  ws.command('get')
    .description('show a workspace as JSON')
    .argument('<id>', 'workspace id')
    .action((id: string, _o: unknown, cmd: Command) => act(() => workspaceGetCommand(client(cmd), id, write)));
  ws.command('delete')
    .description('delete a workspace')
    .argument('<id>', 'workspace id')
    .action((id: string, _o: unknown, cmd: Command) => act(() => workspaceDeleteCommand(client(cmd), id, write)));

  program
    .command('mcp')
    .description('an MCP server on stdio whose tools run commands and manage workspaces on the server at --url')
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ url: string; key?: string }>();
      const { serveMcp } = await import('../mcp/server.js');
      await serveMcp({ url: o.url, apiKey: o.key });
      done(-1);
    });

  return program;
}

/** Parses argv and runs the command; commander's own refusals (unknown command or option) exit 64. */
export async function runCli(argvIn: string[]): Promise<number> {
  // `sandboxshift` and `sandboxshift --config FILE` run the server, as they always did.
  const argv = argvIn.length === 0 || argvIn[0] === '--config' || argvIn[0]!.startsWith('--config=') ? ['serve', ...argvIn] : argvIn;
  return new Promise<number>((resolve, reject) => {
    const program = buildProgram(argv, resolve);
    program.parseAsync(argv, { from: 'user' }).catch((err: unknown) => {
      if (err instanceof CommanderError) {
        if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') resolve(0);
        else resolve(EXIT.USAGE);
        return;
      }
      reject(err);
    });
  });
}
