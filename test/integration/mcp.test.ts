// `sandboxshift mcp` (the built CLI) driven over stdio by the MCP SDK's own client, against a real
// server: initialize, tools/list, run_command end to end with progress, workspace tools, refusals.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import t from 'tap';
import { installDir } from '../../src/paths.js';
import { startTestServer } from '../helpers/server.js';

const cli = join(installDir(), 'dist', 'src', 'cli.js');
if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);

const server = await startTestServer();
t.teardown(() => server.close());

const transport = new StdioClientTransport({ command: process.execPath, args: [cli, 'mcp', '--url', server.url], stderr: 'pipe' });
const mcp = new Client({ name: 'sandboxshift-test', version: '1.0.0' });
await mcp.connect(transport);
t.teardown(() => mcp.close());

const call = async (name: string, args: Record<string, unknown>, onprogress?: (p: { progress: number; message?: string }) => void) =>
  (await mcp.callTool({ name, arguments: args }, undefined, onprogress ? { onprogress } : undefined)) as CallToolResult;

t.test('initialize and tools/list', async (t) => {
  t.match(mcp.getServerVersion(), { name: 'sandboxshift' });
  const { tools } = await mcp.listTools();
  t.same(tools.map((x) => x.name).sort(), ['create_workspace', 'delete_workspace', 'read_file', 'run_command', 'write_files']);
  const run = tools.find((x) => x.name === 'run_command')!;
  t.same(Object.keys(run.inputSchema.properties ?? {}).sort(), ['allow', 'command', 'env', 'files', 'image', 'timeoutSeconds', 'workspaceId']);
  t.same(run.inputSchema.required, ['command']);
});

t.test('run_command runs a task on inline files, with progress notifications', async (t) => {
  const progress: { progress: number; message?: string }[] = [];
  const r = await call('run_command', { command: 'cat in.txt; echo oops >&2; exit 3', files: { 'in.txt': 'hello from mcp\n' } }, (p) => progress.push(p));
  t.notOk(r.isError, JSON.stringify(r.content));
  t.match(r.structuredContent, { status: 'failed', exitCode: 3, stdout: 'hello from mcp\n', stderr: 'oops\n' });
  t.ok(progress.length >= 1, `progress notifications arrived (${progress.length})`);
  t.ok(progress.some((p) => /running/.test(p.message ?? '')), 'one says the task is running');
});

t.test('workspace tools: create, write_files into it, run on it, read_file, delete', async (t) => {
  const created = await call('create_workspace', { files: { 'a.txt': 'a\n' } });
  t.notOk(created.isError, JSON.stringify(created.content));
  const id = (created.structuredContent as { workspaceId: string }).workspaceId;
  t.match(id, /^ws_/);
  const written = await call('write_files', { workspaceId: id, files: { 'dir/b.txt': "b with 'quotes' and $HOME\n" } });
  t.notOk(written.isError, JSON.stringify(written.content));
  const run = await call('run_command', { command: 'cat a.txt dir/b.txt', workspaceId: id });
  t.match(run.structuredContent, { status: 'succeeded', exitCode: 0, stdout: "a\nb with 'quotes' and $HOME\n" });
  const read = await call('read_file', { workspaceId: id, path: 'dir/b.txt' });
  t.match(read.structuredContent, { content: "b with 'quotes' and $HOME\n" });
  const deleted = await call('delete_workspace', { workspaceId: id });
  t.notOk(deleted.isError, JSON.stringify(deleted.content));
  const gone = await call('read_file', { workspaceId: id, path: 'a.txt' });
  t.equal(gone.isError, true);
  t.match(gone.structuredContent, { error: { code: 'WORKSPACE_NOT_FOUND', status: 404 } });
});

t.test('refused commands come back as tool errors carrying the server code', async (t) => {
  const slow = await call('run_command', { command: 'true', timeoutSeconds: 99999999 });
  t.equal(slow.isError, true);
  t.match(slow.structuredContent, { error: { code: 'LIMIT_ABOVE_MAXIMUM', status: 422 } });
  t.match((slow.content[0] as { text: string }).text, /^LIMIT_ABOVE_MAXIMUM: /);
  const broad = await call('run_command', { command: 'true', allow: ['*.com'] });
  t.equal(broad.isError, true);
  t.match(broad.structuredContent, { error: { code: 'EGRESS_PATTERN_TOO_BROAD' } });
});
