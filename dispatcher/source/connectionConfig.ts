import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type pg from 'pg';
import { parse } from 'pg-connection-string';

/** Files that secure the connection to the source database (mounted from a Secret or ConfigMap in a cluster). */
export interface DatabaseTls {
  /** CA bundle the server's certificate must chain to; the host name is verified too (sslmode=verify-full). */
  caFile?: string;
  /** Client certificate and key, for servers that authenticate clients by certificate. */
  certFile?: string;
  keyFile?: string;
}

/**
 * The pg connection settings for a URL, with the TLS files applied. Without files the URL is used as
 * it is (its own `sslmode`/`sslrootcert` work). With files the URL is parsed here and `ssl` set
 * explicitly, because pg lets a connection string's ssl settings override an `ssl` given beside it.
 */
export function connectionConfig<C extends pg.ClientConfig>(url: string, tls: DatabaseTls | undefined, extra: C = {} as C): C {
  if (!tls || (!tls.caFile && !tls.certFile)) return { connectionString: url, ...extra };
  const { ssl: fromUrl, sslmode: _mode, sslrootcert: _root, sslcert: _cert, sslkey: _key, port, ...rest } = parse(url) as ReturnType<typeof parse> & Record<string, unknown>;
  const ssl: ConnectionOptions = {
    ...(typeof fromUrl === 'object' && fromUrl !== null ? (fromUrl as ConnectionOptions) : {}),
    // verify-full: the chain and the host name (Node checks the name against the certificate's SANs).
    rejectUnauthorized: true,
    ...(tls.caFile ? { ca: readFileSync(tls.caFile, 'utf8') } : {}),
    ...(tls.certFile ? { cert: readFileSync(tls.certFile, 'utf8') } : {}),
    ...(tls.keyFile ? { key: readFileSync(tls.keyFile, 'utf8') } : {}),
  };
  return { ...(rest as pg.ClientConfig), ...(port ? { port: Number(port) } : {}), ssl, ...extra } as C;
}
