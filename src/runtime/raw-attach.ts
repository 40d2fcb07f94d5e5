import type { Socket } from 'node:net';
import type Docker from 'dockerode';

/**
 * A raw hijacked attach to a container that sends no body: docker-modem's own attach writes its
 * options JSON into the container's stdin. Resolves with the upgraded socket (input is written
 * to it as is; output arrives in the engine's 8-byte-header frames).
 */
export function rawAttach(docker: Docker, id: string, streams: { stdin: boolean; stdout: boolean; stderr: boolean }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    docker.modem.dial(
      {
        path: `/containers/${id}/attach?`,
        method: 'POST',
        options: { _query: { stream: true, ...streams } },
        isStream: true,
        hijack: true,
        openStdin: false,
        file: Buffer.alloc(0),
        headers: { 'Content-Type': 'application/vnd.docker.raw-stream' },
        statusCodes: { 101: true, 200: true, 404: 'no such container', 409: 'container not running', 500: 'server error' },
      },
      (err: unknown, sock: unknown) => (err ? reject(err) : resolve(sock as Socket)),
    );
  });
}
