// The Node baseline: ocpp-rpc in strict mode (every call and response validated against
// the OCPP 1.6 schemas), answering what the load generator sends, with no storage.
//   node benchmarks/node/ocpp_rpc_server.js <port>
// Listens on 127.0.0.1 only; exits on SIGTERM or when its stdin closes.
'use strict';
const { RPCServer } = require('ocpp-rpc');

const port = Number(process.argv[2] || 0);
const server = new RPCServer({
  protocols: ['ocpp1.6'],
  strictMode: true,
  // Same keepalive as the Python servers: one ping per minute per connection.
  pingIntervalMs: 60000,
});
let failures = 0;
server.on('client', (client) => {
  client.on('strictValidationFailure', () => { failures += 1; });
  const now = () => new Date().toISOString();
  client.handle('BootNotification', () => ({ status: 'Accepted', interval: 300, currentTime: now() }));
  client.handle('Heartbeat', () => ({ currentTime: now() }));
  client.handle('StatusNotification', () => ({}));
  client.handle('MeterValues', () => ({}));
});

async function main() {
  await server.listen(port, '127.0.0.1');
  process.stdout.write(`READY ${port}\n`);
}

function stop() {
  if (failures) process.stderr.write(`strict validation failures: ${failures}\n`);
  server.close({ awaitPending: false, force: true }).finally(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
main().catch((err) => { process.stderr.write(`${err.stack}\n`); process.exit(1); });
