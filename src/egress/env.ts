/**
 * Proxy variables for a task with an allowlist: the relay listens on 127.0.0.1:PORT inside the
 * container. Both cases are set because clients disagree (curl ignores upper-case HTTP_PROXY,
 * BusyBox wget reads only lower case); pip and npm have their own. NO_PROXY keeps the task's own
 * loopback direct. There is no DNS resolver in the container: the proxy resolves names.
 */
export function proxyEnv(port: number): Record<string, string> {
  const url = `http://127.0.0.1:${port}`;
  const noProxy = 'localhost,127.0.0.1,::1';
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    ALL_PROXY: url,
    NO_PROXY: noProxy,
    http_proxy: url,
    https_proxy: url,
    all_proxy: url,
    no_proxy: noProxy,
    PIP_PROXY: url,
    npm_config_proxy: url,
    npm_config_https_proxy: url,
  };
}
