import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';

/** Who is calling a tool, from the bearer token the HTTP transport verified. */
export interface McpCaller {
  /** stable key of the token's principal (issuer, client and subject); namespaces per-caller state */
  readonly principal: string;
  /** readable name: the token's subject, else its client id; `local` without a token (stdio) */
  readonly name: string;
  readonly scopes: readonly string[];
  /** false on stdio and other unauthenticated transports: the local user owns the process */
  readonly authenticated: boolean;
}

/** The local user of a stdio server: no token, every scope. */
export const LOCAL_CALLER: McpCaller = { principal: 'local', name: 'local', scopes: [], authenticated: false };

/** The caller of a request; `extra` is the second argument the SDK passes to tool, resource and prompt handlers. */
export function callerOf(extra: { readonly authInfo?: AuthInfo | undefined } | undefined): McpCaller {
  const auth = extra?.authInfo;
  if (!auth) return LOCAL_CALLER;
  const subject = typeof auth.extra?.['subject'] === 'string' ? (auth.extra['subject'] as string) : null;
  const issuer = typeof auth.extra?.['issuer'] === 'string' ? (auth.extra['issuer'] as string) : null;
  return {
    principal: JSON.stringify([issuer, auth.clientId, subject]),
    name: subject ?? auth.clientId,
    scopes: auth.scopes,
    authenticated: true,
  };
}
