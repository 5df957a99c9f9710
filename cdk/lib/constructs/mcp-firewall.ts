import { CfnWebACL, CfnWebACLAssociation } from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { requireIntegerInRange } from '../prop-checks.js';

export interface McpFirewallProps {
  /** ARN of the public Application Load Balancer to protect. */
  readonly loadBalancerArn: string;
  /**
   * Requests one client IP may send in any 5 minutes before it is blocked (WAF's rate-based rule).
   * @default 3000
   */
  readonly requestsPer5Minutes?: number;
}

/** AWS managed rule groups the web ACL runs, in priority order. */
export const MANAGED_RULE_GROUPS = [
  'AWSManagedRulesAmazonIpReputationList',
  'AWSManagedRulesCommonRuleSet',
  'AWSManagedRulesKnownBadInputsRuleSet',
] as const;

/**
 * The WAF web ACL in front of the MCP load balancer: a per-IP rate limit, then AWS's IP reputation list,
 * common rule set and known-bad-inputs rules. Everything else is allowed on to the server, which checks
 * the bearer token of every request.
 */
export class McpFirewall extends Construct {
  readonly webAcl: CfnWebACL;

  constructor(scope: Construct, id: string, props: McpFirewallProps) {
    super(scope, id);
    const limit = props.requestsPer5Minutes ?? 3000;
    requireIntegerInRange(`${id} requestsPer5Minutes`, limit, 10, 2_000_000_000, 'the WAF rate-based rule limits');
    const visibility = (metricName: string): CfnWebACL.VisibilityConfigProperty => ({
      cloudWatchMetricsEnabled: true,
      metricName,
      sampledRequestsEnabled: true,
    });

    this.webAcl = new CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      description: 'MCP endpoint: rate limit and AWS managed rules',
      visibilityConfig: visibility('qicore-mcp'),
      rules: [
        {
          name: 'RateLimitPerIp',
          priority: 0,
          action: { block: {} },
          statement: { rateBasedStatement: { limit, aggregateKeyType: 'IP', evaluationWindowSec: 300 } },
          visibilityConfig: visibility('qicore-mcp-rate'),
        },
        ...MANAGED_RULE_GROUPS.map((name, i) => ({
          name,
          priority: i + 1,
          overrideAction: { none: {} },
          statement: {
            managedRuleGroupStatement: {
              vendorName: 'AWS',
              name,
              // The common rule set blocks bodies over 8 KB; an agent's record_decision (up to 100 tool-call
              // records) or a published signal with its rationale can be larger. Counted, not blocked; the
              // server caps the body size itself.
              ...(name === 'AWSManagedRulesCommonRuleSet' && {
                ruleActionOverrides: [{ name: 'SizeRestrictions_BODY', actionToUse: { count: {} } }],
              }),
            },
          },
          visibilityConfig: visibility(`qicore-mcp-${name}`),
        })),
      ],
    });
    new CfnWebACLAssociation(this, 'Association', { resourceArn: props.loadBalancerArn, webAclArn: this.webAcl.attrArn });
  }
}
