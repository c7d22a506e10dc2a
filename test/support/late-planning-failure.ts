/**
 * A fit whose planning fails late, while the local runner's helper thread is busy (it loads vega
 * during the initialization), run as a process of its own: it prints the error it was given and
 * exits 0, or the process ends first (exit code 13, nothing printed). Usage: tsx <this> <dir>.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../lib/config.js';
import { fitLocal } from '../../lib/local/runner.js';

const dir = process.argv[2];
const file = path.join(dir, 'late.csv');
const rows = ['x1,x2,x3,y'];
for (let i = 0; i < 20_000; i++) rows.push(`${((i * 7919) % 1000) / 100},${((i * 104729) % 997) / 100},${(i % 13) / 3},${i % 5}`);
writeFileSync(file, rows.join('\n') + '\n');
try {
  await fitLocal({
    files: [file],
    config: parseConfig({ target: 'y' }),
    outDir: path.join(dir, 'out'),
    workers: 0,
    // The last restart of the initialization: by then the helper thread has parsed the shards and is loading vega.
    onPhase: (p) => {
      if (p.phase === 'initialize' && p.done === p.total) throw new Error('a late planning failure');
    },
  });
  console.log('fitted');
} catch (error) {
  console.log(`failed: ${(error as Error).message}`);
}
