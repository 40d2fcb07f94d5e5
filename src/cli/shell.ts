/** Quotes one word for /bin/sh: left bare when it is made only of safe characters, else in single quotes. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_\-+=:,./@%^]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command line a task runs (`/bin/sh -c <line>`) from the words after `--`: one word is the
 * line itself (`-- 'make && make test'`); several are each quoted and joined, so that
 * `-- sh -c 'ls; exit 7'` runs exactly those three words, as `docker run` would.
 */
export function commandLine(words: readonly string[]): string {
  if (words.length === 0) throw new Error('no command given');
  if (words.length === 1) return words[0]!;
  return words.map(shellQuote).join(' ');
}
