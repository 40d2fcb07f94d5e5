export const trace = (what: string) => {
  if (process.env.SBX_TRACE) process.stderr.write(`TRACE ${performance.now().toFixed(1)} ${what}\n`);
};
