import type {
  ContainerEngine,
  EngineVersions,
  OwnContainer,
  RunningSandbox,
  SandboxExit,
  SandboxHandlers,
  SandboxJob,
  SandboxShape,
} from '../../src/runtime/engine.js';

/** What a fake sandbox does once started: its output, then its exit code. */
export interface FakeRun {
  stdout?: string;
  stderr?: string;
  exitCode: number;
}

/**
 * A ContainerEngine with no containers behind it, for tests of what happens before and around a
 * run (admission, HTTP validation, the task facade). Images are what the test declares present,
 * with their labels; a started sandbox delivers `run(job)`'s output and exits on the next turn of
 * the event loop. Every start is recorded.
 */
export class FakeEngine implements ContainerEngine {
  readonly started: { shape: SandboxShape; job: SandboxJob }[] = [];
  private readonly images: Map<string, Record<string, string>>;

  constructor(
    images: Record<string, Record<string, string>> = {},
    private readonly run: (job: SandboxJob) => FakeRun = () => ({ exitCode: 0 }),
  ) {
    this.images = new Map(Object.entries(images));
  }

  async ping(): Promise<void> {}

  async imagePresent(image: string): Promise<boolean> {
    return this.images.has(image);
  }

  async imageLabels(image: string): Promise<Record<string, string> | null> {
    return this.images.get(image) ?? null;
  }

  async start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    this.started.push({ shape, job });
    const n = this.started.length;
    const plan = this.run(job);
    let settle!: (e: SandboxExit) => void;
    const exit = new Promise<SandboxExit>((r) => (settle = r));
    let stopped = false;
    const end = (exitCode: number) => {
      if (stopped) return;
      stopped = true;
      settle({ exitCode, oomKills: 0, finishedAt: new Date(), vanished: false });
    };
    setImmediate(() => {
      if (stopped) return;
      if (plan.stdout) handlers.onOutput('stdout', Buffer.from(plan.stdout));
      if (plan.stderr) handlers.onOutput('stderr', Buffer.from(plan.stderr));
      end(plan.exitCode);
    });
    return {
      containerId: `fake-${n}`,
      exit,
      writeStdin: () => false,
      endStdin: () => undefined,
      stop: async () => end(137),
      detach: async () => {
        stopped = true;
      },
    };
  }

  async listOurs(): Promise<OwnContainer[]> {
    return [];
  }

  async adopt(): Promise<RunningSandbox | null> {
    return null;
  }

  async remove(): Promise<void> {}

  async versions(): Promise<EngineVersions> {
    return { podman: null, runc: null, runsc: null };
  }
}
