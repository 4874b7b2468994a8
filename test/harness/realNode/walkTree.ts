import { type Dirent, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Walks the tree under `root` depth first. `visit` sees every entry and says whether to go into it
 * (directories only); `leave` runs for each directory after its entries, so a caller can collect the
 * deepest first. A directory that cannot be read is passed over: under a running node, pods' directories,
 * cgroups and interfaces come and go while they are being read.
 */
export function walkTree(root: string, visit: (path: string, entry: Dirent) => boolean, leave?: (dir: string) => void): void {
  const walk = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (visit(path, entry) && entry.isDirectory()) walk(path);
    }
    leave?.(dir);
  };
  walk(root);
}
