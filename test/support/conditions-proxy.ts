/**
 * An HTTP proxy in front of the S3/SQS emulator that enforces S3's conditional writes, which
 * fauxqs 1.9.2 ignores (test/contract/object-store.contract.ts lists its gaps):
 *
 *   const emu = await startEmulator();
 *   const proxy = await startConditionsProxy(emu.endpoint);
 *   const s3 = new S3Client({ ...clientConfig(proxy.endpoint), forcePathStyle: true });
 *   ...
 *   await proxy.stop();
 *
 * A PutObject carrying If-None-Match or If-Match is answered as real S3 answers it: 412
 * PreconditionFailed when `If-None-Match: *` meets an existing key or `If-Match` names another
 * ETag, 404 NoSuchKey when `If-Match` meets no object; otherwise the put goes through. Conditional
 * puts on one key are serialized (a per-key lock held from the check until the emulator has
 * answered the put), so of concurrent writers on one ETag exactly one wins, as on S3, which
 * answers the losers 412 or 409 ConditionalRequestConflict. Unconditional requests are not
 * locked, like on S3. Everything else (reads, listings, SQS long polls) is passed through
 * byte for byte; fauxqs itself honours If-Match on GetObject.
 *
 * The emulator checks no signatures, so the proxy's own existence check (a HEAD) is unsigned.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ConditionsProxy {
  /** Base URL for S3 and SQS clients, e.g. `http://127.0.0.1:41235`. */
  readonly endpoint: string;
  /** Stops listening and closes open connections. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startConditionsProxy(upstream: string): Promise<ConditionsProxy> {
  const target = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true });
  /** The tail of the lock chain per object path: conditional puts on one key run one at a time. */
  const locks = new Map<string, Promise<void>>();

  const forward = (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> =>
    new Promise((resolve) => {
      // This server has already answered any `Expect: 100-continue`; the body follows at once.
      const { expect: _answered, ...headers } = req.headers;
      const out = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
          answer.pipe(res);
          answer.on('end', resolve);
          answer.on('error', () => resolve());
        },
      );
      out.on('error', (error) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`conditions proxy: ${error.message}`);
        resolve();
      });
      req.pipe(out);
    });

  /** The object's ETag at the emulator, or undefined when there is none. */
  const currentEtag = (objectPath: string): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      const head = http.request({ host: target.hostname, port: target.port, method: 'HEAD', path: objectPath, agent }, (answer) => {
        answer.resume();
        answer.on('end', () => {
          if (answer.statusCode === 404) resolve(undefined);
          else if (answer.statusCode === 200) resolve(String(answer.headers.etag));
          else reject(new Error(`conditions proxy: HEAD ${objectPath} answered ${answer.statusCode}`));
        });
      });
      head.on('error', reject);
      head.end();
    });

  const refuse = (req: http.IncomingMessage, res: http.ServerResponse, status: 412 | 404, code: string, message: string) => {
    req.resume(); // drain the body the client is sending
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>conditions-proxy</RequestId></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': 'conditions-proxy' });
    res.end(body);
  };

  const conditionalPut = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const objectPath = (req.url ?? '/').split('?')[0];
    const previous = locks.get(objectPath) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    locks.set(objectPath, tail);
    await previous;
    try {
      const etag = await currentEtag(objectPath);
      const ifNoneMatch = req.headers['if-none-match'];
      const ifMatch = req.headers['if-match'];
      if (ifNoneMatch !== undefined && ifNoneMatch === '*' && etag !== undefined) {
        return refuse(req, res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      if (ifMatch !== undefined && etag === undefined) {
        return refuse(req, res, 404, 'NoSuchKey', 'The specified key does not exist.');
      }
      if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== etag) {
        return refuse(req, res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      await forward(req, res);
    } finally {
      release();
      if (locks.get(objectPath) === tail) locks.delete(objectPath);
    }
  };

  const server = http.createServer((req, res) => {
    const conditional = req.method === 'PUT' && (req.headers['if-none-match'] !== undefined || req.headers['if-match'] !== undefined);
    (conditional ? conditionalPut(req, res) : forward(req, res)).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`conditions proxy: ${error instanceof Error ? error.message : String(error)}`);
    });
  });
  // SQS long polls last up to 20 s: no server-side timeouts on either leg.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      });
      return stopped;
    },
  };
}
