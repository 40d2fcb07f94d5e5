/**
 * The isolations the parametrised integration tests run under: each test is run once per entry,
 * against a server that allows both (runc stays its default).
 */
export const ISOLATIONS = ['runc', 'gvisor'] as const;
export type TestIsolation = (typeof ISOLATIONS)[number];

/** Config overrides for startTestServer: both isolations allowed. */
export const BOTH_ISOLATIONS = { engine: { allowedIsolation: [...ISOLATIONS] } };
