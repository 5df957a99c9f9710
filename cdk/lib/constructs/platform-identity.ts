import { Aws, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import {
  AccountRecovery,
  FeaturePlan,
  Mfa,
  OAuthScope,
  ResourceServerScope,
  StandardThreatProtectionMode,
  UserPool,
  UserPoolClient,
  UserPoolResourceServer,
  type UserPoolDomain,
} from 'aws-cdk-lib/aws-cognito';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { SCOPES } from '../../../layers/shared/src/mcp/scopes.js';
import { InvalidPropsError } from '../prop-checks.js';

/** What each scope is for, as the console and the consent screen show it. */
const SCOPE_DESCRIPTIONS: Readonly<Record<string, string>> = {
  [SCOPES.marketRead]: 'Read market data, indicators, charts and signals',
  [SCOPES.signalsWrite]: 'Publish signals',
  [SCOPES.memoryRead]: 'Read agent memory',
  [SCOPES.memoryWrite]: 'Write agent memory',
  [SCOPES.agentsRead]: 'Read agent controls, audit log and paper portfolios',
  [SCOPES.agentsWrite]: 'Record agent decisions in the audit log',
  [SCOPES.agentsAdmin]: 'Engage and release the kill switch',
  [SCOPES.paperTrade]: 'Place paper orders',
};

/** What the scheduled agents may do: everything but the kill switch, which is for people. */
export const AGENT_CLIENT_SCOPES: readonly string[] = Object.values(SCOPES).filter((s) => s !== SCOPES.agentsAdmin);
/** What people may do through an MCP client: read, publish, remember, and operate the kill switch; trading is the agents'. */
export const USER_CLIENT_SCOPES: readonly string[] = Object.values(SCOPES).filter(
  (s) => s !== SCOPES.agentsWrite && s !== SCOPES.paperTrade,
);

export interface PlatformIdentityProps {
  /**
   * Prefix of the hosted domain `https://<prefix>.auth.<region>.amazoncognito.com` (token endpoint, sign-in);
   * unique in the region, lower-case letters, digits and hyphens, without 'aws', 'amazon' or 'cognito'.
   * @default `qicore-<stage>-<account id>`
   */
  readonly domainPrefix?: string;
  /** stage name, for the default domain prefix */
  readonly stage: string;
  /**
   * Redirect URLs of the people's app client (authorization code + PKCE), e.g. an MCP client's local callback.
   * @default ['http://localhost:6274/oauth/callback'] (MCP Inspector)
   */
  readonly callbackUrls?: readonly string[];
  /**
   * Where Cognito sends people after sign-out.
   * @default the callback URLs
   */
  readonly logoutUrls?: readonly string[];
  /**
   * Identifier of the resource server; Cognito prefixes every custom scope with it (`qicore/market:read`),
   * which the MCP server's scope check accepts.
   * @default 'qicore'
   */
  readonly resourceServerId?: string;
  /**
   * Lifetime of access tokens (5 minutes to 1 day).
   * @default Duration.hours(1)
   */
  readonly accessTokenValidity?: Duration;
  /**
   * What happens to the user pool and the client secret when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The platform's OAuth issuer: a Cognito user pool with a resource server holding the MCP scopes, a
 * client-credentials app client for agents and services (its secret in Secrets Manager), and an
 * authorization-code + PKCE app client for people, who are created by an administrator (no sign-up).
 * Cognito access tokens carry `client_id`, not `aud`: the MCP server checks `clientIds`.
 */
export class PlatformIdentity extends Construct {
  readonly userPool: UserPool;
  readonly domain: UserPoolDomain;
  readonly agentClient: UserPoolClient;
  readonly userClient: UserPoolClient;
  /** SecretString: the agent client's secret */
  readonly agentClientSecret: ISecret;
  /** `https://cognito-idp.<region>.amazonaws.com/<pool id>`: the `iss` of its tokens */
  readonly issuer: string;
  readonly jwksUrl: string;
  /** `https://<domain>/oauth2/token` */
  readonly tokenUrl: string;
  /** scopes as Cognito grants them, resource server prefix included */
  readonly agentScopes: readonly string[];

  constructor(scope: Construct, id: string, props: PlatformIdentityProps) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const domainPrefix = props.domainPrefix ?? `qicore-${props.stage}-${Aws.ACCOUNT_ID}`;
    if (props.domainPrefix !== undefined && !/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(domainPrefix)) {
      throw new InvalidPropsError(`${id} domainPrefix '${domainPrefix}' is not a Cognito domain prefix: lower-case letters, digits and inner hyphens, 1 to 63`);
    }
    if (/aws|amazon|cognito/.test(props.domainPrefix ?? '')) {
      throw new InvalidPropsError(`${id} domainPrefix '${domainPrefix}' contains a word Cognito reserves (aws, amazon, cognito): pick another`);
    }
    const callbackUrls = [...(props.callbackUrls ?? ['http://localhost:6274/oauth/callback'])];
    for (const url of callbackUrls) {
      if (!/^https:\/\/|^http:\/\/(localhost|127\.0\.0\.1)(:\d+)?\//.test(url)) {
        throw new InvalidPropsError(`${id} callback URL '${url}' must be https, or http on localhost (Cognito's rule)`);
      }
    }
    const accessTokenValidity = props.accessTokenValidity ?? Duration.hours(1);

    this.userPool = new UserPool(this, 'UserPool', {
      // people are created by an administrator: every user can reach the kill switch scope
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      accountRecovery: AccountRecovery.EMAIL_ONLY,
      passwordPolicy: { minLength: 12, requireLowercase: true, requireUppercase: true, requireDigits: true, requireSymbols: true },
      mfa: Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      // Plus: adaptive authentication and compromised-credential checks (threat protection) on every sign-in
      featurePlan: FeaturePlan.PLUS,
      standardThreatProtectionMode: StandardThreatProtectionMode.FULL_FUNCTION,
      deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy,
    });
    const resourceServerId = props.resourceServerId ?? 'qicore';
    const scopes = Object.values(SCOPES).map(
      (name) => new ResourceServerScope({ scopeName: name, scopeDescription: SCOPE_DESCRIPTIONS[name] ?? name }),
    );
    const server = new UserPoolResourceServer(this, 'ResourceServer', {
      userPool: this.userPool,
      identifier: resourceServerId,
      userPoolResourceServerName: 'qicore MCP',
      scopes,
    });
    const oauthScopes = (names: readonly string[]) =>
      scopes.filter((s) => names.includes(s.scopeName)).map((s) => OAuthScope.resourceServer(server, s));

    this.agentClient = this.userPool.addClient('AgentClient', {
      userPoolClientName: 'qicore-agents',
      generateSecret: true,
      oAuth: { flows: { clientCredentials: true }, scopes: oauthScopes(AGENT_CLIENT_SCOPES) },
      accessTokenValidity,
      enableTokenRevocation: true,
      preventUserExistenceErrors: true,
    });
    this.userClient = this.userPool.addClient('UserClient', {
      userPoolClientName: 'qicore-people',
      // a public client: MCP clients run on people's machines and cannot keep a secret; PKCE protects the code
      generateSecret: false,
      authFlows: { userSrp: true },
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [OAuthScope.OPENID, OAuthScope.EMAIL, ...oauthScopes(USER_CLIENT_SCOPES)],
        callbackUrls,
        logoutUrls: [...(props.logoutUrls ?? callbackUrls)],
      },
      accessTokenValidity,
      idTokenValidity: accessTokenValidity,
      refreshTokenValidity: Duration.days(30),
      enableTokenRevocation: true,
      preventUserExistenceErrors: true,
    });
    this.domain = this.userPool.addDomain('Domain', { cognitoDomain: { domainPrefix } });

    this.agentClientSecret = new Secret(this, 'AgentClientSecret', {
      description: 'Client secret of the agents\u2019 Cognito app client (client credentials grant)',
      // read from Cognito at deploy time by a custom resource; the template holds no value
      secretStringValue: this.agentClient.userPoolClientSecret,
      removalPolicy,
    });
    Validations.of(this.agentClientSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Cognito generates app client secrets and cannot rotate one in place; a new secret means a new app client, made by redeploying with another construct id.',
    });

    const { region } = Stack.of(this);
    this.issuer = `https://cognito-idp.${region}.amazonaws.com/${this.userPool.userPoolId}`;
    this.jwksUrl = `${this.issuer}/.well-known/jwks.json`;
    this.tokenUrl = `${this.domain.baseUrl()}/oauth2/token`;
    this.agentScopes = AGENT_CLIENT_SCOPES.map((s) => `${resourceServerId}/${s}`);
  }
}
