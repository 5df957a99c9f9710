import { Token, Validations, type CfnElement, type Stack } from 'aws-cdk-lib';
import type { AgentOrchestration } from './constructs/agent-orchestration.js';

/**
 * cdk-nag findings every Lambda of a stack shares, acknowledged once for the stack with the reason;
 * findings of one resource are acknowledged next to that resource.
 */
export function acknowledgeLambdaDefaults(stack: Stack): void {
  const validations = Validations.of(stack);
  validations.acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason:
      'AWS-maintained policy that only lets a function write its own CloudWatch Logs; a hand-written copy would be the same three actions, unmaintained.',
  });
  validations.acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
    reason:
      'AWS-maintained policy Lambda needs to attach its network interfaces in the VPC (ec2:CreateNetworkInterface and friends, which take no resource scoping).',
  });
  validations.acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaMSKExecutionRole]',
    reason:
      'AWS-maintained policy the MSK event source needs to describe the cluster and attach to its subnets; the data-plane rights are the separate, topic-scoped grant.',
  });
  validations.acknowledge({
    id: 'AwsSolutions-L1',
    reason:
      'Functions run nodejs22.x, the runtime their bundles target (esbuild target node22) and the test suite covers; the move to a newer runtime is a tested change of LAMBDA_BUNDLING, not a silent bump.',
  });
}

/** The agent run's findings (AgentOrchestration): X-Ray, Step Functions logging, and invoking its own functions' versions. */
export function acknowledgeAgentRun(stack: Stack, agents: AgentOrchestration): void {
  const validations = Validations.of(agents);
  validations.acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Only X-Ray (PutTraceSegments, PutTelemetryRecords, sampling rules) and the CloudWatch Logs delivery actions Step Functions needs to log to its group: none of them takes resource-level permissions.',
  });
  for (const fn of Object.values(agents.functions)) {
    // the finding names the function by logical id
    validations.acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${stack.getLogicalId(fn.node.defaultChild as CfnElement)}.Arn>:*]`,
      reason: 'lambda:InvokeFunction on an agent function and its versions (`:*`): the state machine invokes its four functions and nothing else.',
    });
  }
}

/** An ARN as cdk-nag prints it in finding ids: unresolved partition, region and account as `<AWS::...>`. */
export function nagArn(stack: Stack, service: string, resource: string): string {
  const part = (value: string, pseudo: string) => (Token.isUnresolved(value) ? `<AWS::${pseudo}>` : value);
  return `arn:${part(stack.partition, 'Partition')}:${service}:${part(stack.region, 'Region')}:${part(stack.account, 'AccountId')}:${resource}`;
}
