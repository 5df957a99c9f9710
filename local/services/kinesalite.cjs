// Runs kinesalite, the project's devDependency, on 127.0.0.1 only (its CLI listens on every interface).
// Started by services.sh:  node local/services/kinesalite.cjs REPO_ROOT PORT DATA_DIR
'use strict';
const path = require('node:path');

const [repoRoot, port, dataDir] = process.argv.slice(2);
if (!repoRoot || !port || !dataDir) {
  console.error('usage: node kinesalite.cjs REPO_ROOT PORT DATA_DIR');
  process.exit(2);
}
const moduleDir = path.join(repoRoot, 'node_modules', 'kinesalite');
const { version } = require(path.join(moduleDir, 'package.json'));
const kinesalite = require(moduleDir);

const server = kinesalite({
  path: dataDir, // LevelDB: streams and records survive restarts
  // stream state changes (CREATING -> ACTIVE, ...) take 50 ms instead of 500 ms
  createStreamMs: 50,
  deleteStreamMs: 50,
  updateStreamMs: 50,
  shardLimit: 100,
});
server.listen(Number(port), '127.0.0.1', () => {
  const address = server.address();
  console.log(`kinesalite ${version} listening at http://${address.address}:${address.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    // closes the LevelDB store too; idle keep-alive sockets must not hold the exit up
    setTimeout(() => process.exit(0), 2000).unref();
    server.close(() => process.exit(0));
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
  });
}
