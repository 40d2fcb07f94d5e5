// End to end in each runtime image, chosen the way a user gets it: marker files in the workspace,
// "image": "auto" (the default). Python runs `python -c`, Node runs `node -e`, multi runs both.
// The V2 images (go, java, rust) compile and run a hello world when present; on a machine set up
// offline their tags come from the image record (<dataDir>/images.json), e.g. runtime-go:1.19.
import t from 'tap';
import { runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ maxima: { cpus: 2, memoryMb: 4096, pids: 1024, timeoutSeconds: 600 } });
t.teardown(() => srv.close());
const images = srv.services.config.images;
const imageOf = (lang: string) => images.languages[lang]!.image;

interface Case {
  name: string;
  files: Record<string, string>;
  command: string;
  image: string;
  markers: string[];
  stdout: string | RegExp;
  /** Optional images are checked when present; the default ones must be there. */
  optional?: boolean;
  memoryMb?: number;
}

const cases: Case[] = [
  {
    name: 'python: requirements.txt → the Python image, python -c',
    files: { 'requirements.txt': '', 'main.py': 'print("main", 6 * 7)\n' },
    command: 'python -c "import sys; print(sys.version_info[0], sys.version_info[1])" && python3 main.py',
    image: imageOf('python'),
    markers: ['requirements.txt'],
    stdout: '3 11\nmain 42\n',
  },
  {
    name: 'python: pyproject.toml → the Python image',
    files: { 'pyproject.toml': '[project]\nname = "x"\n' },
    command: 'python -c "print(6 * 7)"',
    image: imageOf('python'),
    markers: ['pyproject.toml'],
    stdout: '42\n',
  },
  {
    name: 'node: package.json → the Node image, node -e',
    files: { 'package.json': '{"name": "x", "version": "1.0.0"}' },
    command: `node -e "console.log(process.versions.node.split('.')[0], 6 * 7)"`,
    image: imageOf('node'),
    markers: ['package.json'],
    stdout: '20 42\n',
  },
  {
    name: 'multi: both markers → the multi image runs python and node',
    files: { 'requirements.txt': '', 'package.json': '{}' },
    command: `python -c "import sys; print('py', sys.version_info[0], sys.version_info[1])" && node -e "console.log('node', process.versions.node.split('.')[0])"`,
    image: images.multi!.image,
    markers: ['package.json', 'requirements.txt'],
    stdout: 'py 3 11\nnode 20\n',
  },
  {
    name: 'no marker → the default (Python) image',
    files: { 'README.md': 'hi\n' },
    command: 'python3 -c "print(6 * 7)"',
    image: imageOf('python'),
    markers: [],
    stdout: '42\n',
  },
  {
    name: 'go: go.mod → the Go image builds and runs a program',
    files: { 'go.mod': 'module example.com/hello\n\ngo 1.19\n', 'main.go': 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("go", 6*7) }\n' },
    command: 'go build -o hello . && ./hello',
    image: imageOf('go'),
    markers: ['go.mod'],
    stdout: 'go 42\n',
    optional: true,
    memoryMb: 1024,
  },
  {
    name: 'java: pom.xml → the Java image compiles and runs a class',
    files: { 'pom.xml': '<project/>\n', 'Hello.java': 'public class Hello { public static void main(String[] a) { System.out.println("java " + 6 * 7); } }\n' },
    command: 'javac -d out Hello.java && java -cp out Hello',
    image: imageOf('java'),
    markers: ['pom.xml'],
    stdout: 'java 42\n',
    optional: true,
    memoryMb: 1024,
  },
  {
    name: 'java: build.gradle → the Java image',
    files: { 'build.gradle': '' },
    command: 'java -version 2>&1 | head -n 1 | cut -d" " -f1-2',
    image: imageOf('java'),
    markers: ['build.gradle'],
    stdout: /^openjdk version\n$/,
    optional: true,
    memoryMb: 1024,
  },
  {
    name: 'rust: Cargo.toml → the Rust image compiles and runs a program',
    files: { 'Cargo.toml': '[package]\nname = "hello"\nversion = "0.1.0"\n', 'main.rs': 'fn main() { println!("rust {}", 6 * 7); }\n' },
    command: 'rustc -o hello main.rs && ./hello',
    image: imageOf('rust'),
    markers: ['Cargo.toml'],
    stdout: 'rust 42\n',
    optional: true,
    memoryMb: 1024,
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    if (c.optional && !(await srv.services.engine.imagePresent(c.image))) {
      t.comment(`optional image ${c.image} is not present on this machine: not run`);
      return;
    }
    const { task, stdout, stderr } = await runTask(srv.url, c.command, {
      workspace: { files: c.files },
      timeoutSeconds: 600,
      ...(c.memoryMb ? { resources: { memoryMb: c.memoryMb } } : {}),
    });
    t.same(task.image, { name: c.image, markers: c.markers }, `detected ${c.image} from ${JSON.stringify(c.markers)}`);
    t.equal(task.status, 'succeeded', `the task succeeded (stderr: ${stderr.slice(-2000)})`);
    if (typeof c.stdout === 'string') t.equal(stdout, c.stdout);
    else t.match(stdout, c.stdout);
  });
}

t.test('two languages the multi image does not carry: 422 IMAGE_AMBIGUOUS naming them', async (t) => {
  const res = await fetch(`${srv.url}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command: 'true', workspace: { files: { 'go.mod': 'module x\n', 'requirements.txt': '' } } }),
  });
  t.equal(res.status, 422);
  const body = (await res.json()) as { error: { code: string; details: { languages: string[] } } };
  t.equal(body.error.code, 'IMAGE_AMBIGUOUS');
  t.same(body.error.details.languages, ['go', 'python']);
});
