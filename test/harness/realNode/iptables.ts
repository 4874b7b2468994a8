/**
 * iptables rules a real node adds: kube-proxy's KUBE-* chains (and a KUBE-FIREWALL that
 * `kube-proxy --cleanup` leaves), kubelet's canaries, the CNI bridge's masquerade chains (CNI-*),
 * portmap's CNI-HOSTPORT-*. Each ruleset is saved before the node starts; at teardown exactly what was
 * added is taken out again (new rules deleted, new chains flushed and deleted, built-in policies put
 * back, and with `nft` at hand the tables it created are deleted), so rules others had before are left alone.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * The rulesets to save and restore: both kernels' interfaces (nf_tables and legacy x_tables), for
 * IPv4 and IPv6, as a component may use either depending on what it finds on the host.
 */
const CANDIDATES = ['iptables-nft', 'ip6tables-nft', 'iptables-legacy', 'ip6tables-legacy'] as const;

/** The iptables commands (`iptables-nft`, ...) this host has; their `-save`/`-restore` siblings are used. */
export function iptablesCommands(): string[] {
  const dirs = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  const found = CANDIDATES.filter((c) => dirs.some((d) => existsSync(`${d}/${c}-save`)));
  if (found.length > 0) return found;
  return ['iptables', 'ip6tables'].filter((c) => dirs.some((d) => existsSync(`${d}/${c}-save`)));
}

interface Table {
  /** chain → policy (`ACCEPT`, `DROP`; `-` for user chains) */
  chains: Map<string, string>;
  /** `-A CHAIN ...` lines, as the save command prints them */
  rules: string[];
}

/** Parses `iptables-save` output into tables (counters are ignored). */
export function parseIptablesSave(text: string): Map<string, Table> {
  const tables = new Map<string, Table>();
  let current: Table | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = { chains: new Map(), rules: [] };
      tables.set(line.slice(1).trim(), current);
    } else if (current && line.startsWith(':')) {
      const [chain = '', policy = '-'] = line.slice(1).split(' ');
      current.chains.set(chain, policy);
    } else if (current && line.startsWith('-A ')) {
      current.rules.push(line.trim());
    }
  }
  return tables;
}

const BUILT_IN = /^(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING)$/;

/**
 * An `iptables-restore --noflush` script that takes out of `now` what it added to `before` (both
 * `-save` outputs): rules added to chains `before` had are deleted one by one, chains `before` lacked
 * are flushed then deleted, built-in policies are set back. Empty when nothing was added.
 */
export function iptablesUndoScript(before: string, now: string): string {
  const old = parseIptablesSave(before);
  const out: string[] = [];
  for (const [name, table] of parseIptablesSave(now)) {
    const prior = old.get(name) ?? { chains: new Map<string, string>(), rules: [] };
    const priorRules = new Map<string, number>();
    for (const rule of prior.rules) priorRules.set(rule, (priorRules.get(rule) ?? 0) + 1);
    const newChains = [...table.chains.keys()].filter((chain) => !prior.chains.has(chain) && !BUILT_IN.test(chain));
    const lines: string[] = [];
    for (const rule of table.rules) {
      const left = priorRules.get(rule) ?? 0;
      if (left > 0) {
        priorRules.set(rule, left - 1);
        continue;
      }
      const chain = rule.split(' ')[1] ?? '';
      // Rules in new chains go with their chain.
      if (!newChains.includes(chain)) lines.push(`-D${rule.slice(2)}`);
    }
    for (const chain of newChains) lines.push(`-F ${chain}`);
    for (const chain of newChains) lines.push(`-X ${chain}`);
    for (const [chain, policy] of table.chains) {
      // A table the node created has ACCEPT built-ins, as every table starts.
      const priorPolicy = prior.chains.get(chain) ?? 'ACCEPT';
      if (BUILT_IN.test(chain) && policy !== priorPolicy) lines.push(`-P ${chain} ${priorPolicy}`);
    }
    if (lines.length > 0) out.push(`*${name}`, ...lines, 'COMMIT');
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

function run(file: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${stderr || error.message}`, { cause: error }));
      else resolve(stdout);
    });
    // A -save command exits without reading its stdin: writing to it could fail with EPIPE.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/**
 * Tables `now` has and `before` lacked that hold nothing (built-in chains only, ACCEPT, no rules): what
 * is left of a table the node created once its rules are out. iptables cannot delete a table; with
 * nf_tables, `nft` can.
 */
export function emptyNewTables(before: string, now: string): string[] {
  const old = parseIptablesSave(before);
  return [...parseIptablesSave(now)]
    .filter(([name, table]) => !old.has(name) && table.rules.length === 0)
    .filter(([, table]) => [...table.chains].every(([chain, policy]) => BUILT_IN.test(chain) && policy === 'ACCEPT'))
    .map(([name]) => name);
}

/** The ruleset of one iptables command (`iptables-nft` → `iptables-nft-save`). */
export function saveIptables(command: string): Promise<string> {
  return run(`${command}-save`, []);
}

/**
 * Takes out what was added since `before` (see iptablesUndoScript), then, for an nf_tables command when
 * `nft` is installed, deletes the tables that were not there before and are empty now. Returns the
 * script it applied and the tables it deleted.
 */
export async function undoIptablesChanges(command: string, before: string): Promise<{ script: string; tablesDeleted: string[] }> {
  const script = iptablesUndoScript(before, await saveIptables(command));
  // -w: wait for the xtables lock kube-proxy may still hold for a moment.
  if (script) await run(`${command}-restore`, ['--noflush', '-w', '5'], script);
  const family = { 'iptables-nft': 'ip', 'ip6tables-nft': 'ip6' }[command];
  const nft = ['/usr/sbin/nft', '/sbin/nft'].find((p) => existsSync(p));
  if (!family || !nft) return { script, tablesDeleted: [] };
  const tablesDeleted = emptyNewTables(before, await saveIptables(command));
  for (const table of tablesDeleted) await run(nft, ['delete', 'table', family, table]);
  return { script, tablesDeleted };
}
