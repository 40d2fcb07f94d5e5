/** One egress decision of the proxy (served by GET /v1/tasks/:id/egress). */
export interface EgressDecision {
  time: string;
  host: string;
  port: number;
  allowed: boolean;
  /**
   * `allowlisted` when allowed; otherwise why not: `not_allowlisted`, `port_not_allowed`,
   * `ip_literal`, `invalid_host`, `host_mismatch` (an absolute-URI request whose Host names
   * another host or port), `forbidden_address:<category>` (the name resolved only to loopback,
   * private, link-local, ... addresses), `resolve_failed`, `connect_failed`, `sni_mismatch` (the
   * ClientHello after CONNECT names another host), `sni_missing` (on 443: no SNI, not TLS,
   * malformed or too slow), `upstream_refused:<status>`, `upstream_unreachable` (the operator's
   * upstream proxy refused or did not answer).
   */
  reason: string;
  /** The address the proxy connected to (allowed), or the refused one (forbidden_address). */
  address: string | null;
  /** Bytes from the task to the destination and back (0 for denials; final once the connection closed). */
  bytesUp: number;
  bytesDown: number;
}

/** Where the proxy records decisions; the SQLite store implements it. */
export interface DecisionSink {
  /** Stores a decision unless the task already has `max`; returns its id (null: not stored, counted as dropped). */
  addEgressDecision(taskId: string, d: EgressDecision, max: number): number | null;
  setEgressBytes(id: number, bytesUp: number, bytesDown: number): void;
}
