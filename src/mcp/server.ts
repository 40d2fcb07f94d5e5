import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { SandboxShiftClient, type ClientOptions } from '../client/client.js';
import { createWorkspaceTool, deleteWorkspaceTool, readFileTool, runTool, writeFilesTool, type Progress } from './tools.js';

const files = z.record(z.string().max(4096), z.string()).describe('Relative path → UTF-8 content');
const workspaceId = z.string().min(1).max(128).describe('An existing workspace id (ws_...)');

/** The MCP server: each tool call is one normal task or workspace request to the SandboxShift server. */
export function buildMcpServer(client: SandboxShiftClient, version = '0.1.0'): McpServer {
  const server = new McpServer({ name: 'sandboxshift', version });

  server.registerTool(
    'run_command',
    {
      description:
        'Run a shell command (/bin/sh -c) in a fresh hardened SandboxShift container, on inline files or an existing workspace. Returns stdout, stderr, exit code and status; sends progress notifications while it runs.',
      inputSchema: {
        command: z.string().min(1).max(131072).describe('Shell command line'),
        files: files.optional().describe('Inline files: a new workspace holding them (not with workspaceId)'),
        workspaceId: workspaceId.optional(),
        image: z.string().min(1).max(255).optional().describe('Image from the server table (default: auto-detected from the workspace)'),
        timeoutSeconds: z.int().min(1).optional().describe('Wall-clock limit (the server refuses one above its maximum)'),
        allow: z.array(z.string().min(1).max(253)).max(256).optional().describe('Egress allowlist: host names and *.suffix wildcards; empty: no network'),
        env: z.record(z.string(), z.string()).optional().describe('Environment variables'),
      },
    },
    async (args, extra) => {
      const token = extra._meta?.progressToken;
      const progress: Progress | null =
        token === undefined
          ? null
          : (progress, message) => extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, message } });
      return runTool(client, args, progress);
    },
  );

  server.registerTool(
    'write_files',
    {
      description: 'Write files: into an existing workspace (by a task on it), or without workspaceId into a new workspace whose id is returned.',
      inputSchema: { files, workspaceId: workspaceId.optional(), image: z.string().min(1).max(255).optional().describe('Image for the writing task (default: auto)') },
    },
    async (args) => writeFilesTool(client, args),
  );

  server.registerTool(
    'read_file',
    {
      description: 'Read one regular file of a workspace as UTF-8 text (links are never followed).',
      inputSchema: { workspaceId, path: z.string().min(1).max(4096).describe('Path relative to the workspace root') },
    },
    async (args) => readFileTool(client, args),
  );

  server.registerTool(
    'create_workspace',
    { description: 'Create a workspace, optionally holding inline files; returns its id.', inputSchema: { files: files.optional() } },
    async (args) => createWorkspaceTool(client, args),
  );

  server.registerTool(
    'delete_workspace',
    { description: 'Delete a workspace and its files.', inputSchema: { workspaceId } },
    async (args) => deleteWorkspaceTool(client, args),
  );

  return server;
}

/** `sandboxshift mcp`: the MCP server on stdin/stdout (logs, if any, go to stderr). */
export async function serveMcp(opts: ClientOptions): Promise<void> {
  const server = buildMcpServer(new SandboxShiftClient(opts));
  await server.connect(new StdioServerTransport());
}
