/**
 * The benches' command line: `--quick` and string flags, each also readable from the environment
 * (BENCH_QUICK=1, --e2e-rows as BENCH_E2E_ROWS, ...), with a full and a quick default.
 */
import { parseArgs } from 'node:util';

export interface BenchFlags {
  quick: boolean;
  /** The flag as given on the command line or in the environment, else undefined. */
  given(name: string): string | undefined;
  /** The flag as given, else its quick or full default. */
  text(name: string, fallback: string, quickFallback: string): string;
  /** A positive number: the flag as given, else its quick or full default. */
  number(name: string, fallback: number, quickFallback: number): number;
  /** A positive number as given, else undefined (no default: the bench works it out). */
  givenNumber(name: string): number | undefined;
}

/** Parses the command line (strict: an unknown flag is an error); `names` are the string flags besides --quick. */
export function benchFlags(names: readonly string[]): BenchFlags {
  const options = Object.fromEntries(names.map((name) => [name, { type: 'string' as const }]));
  const values: Record<string, string | boolean | undefined> = parseArgs({ options: { ...options, quick: { type: 'boolean' } }, strict: true }).values;
  const env = (name: string) => process.env[`BENCH_${name.toUpperCase().replaceAll('-', '_')}`];
  const quick = values.quick === true || ['1', 'true'].includes(env('quick') ?? '');
  const given = (name: string) => {
    const value = values[name] ?? env(name);
    return typeof value === 'string' ? value : undefined;
  };
  const text = (name: string, fallback: string, quickFallback: string) => given(name) ?? (quick ? quickFallback : fallback);
  const positive = (name: string, raw: string) => {
    const value = Number(raw);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got "${raw}"`);
    return value;
  };
  const number = (name: string, fallback: number, quickFallback: number) => positive(name, text(name, String(fallback), String(quickFallback)));
  const givenNumber = (name: string) => {
    const raw = given(name);
    return raw === undefined ? undefined : positive(name, raw);
  };
  return { quick, given, text, number, givenNumber };
}
