import { Stack } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { Grant } from 'aws-cdk-lib/aws-iam';
import { Peer, Port, SecurityGroup, SubnetType, type ISecurityGroup, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { CfnServerlessCluster } from 'aws-cdk-lib/aws-msk';
import { Construct } from 'constructs';
import { InvalidPropsError } from '../prop-checks.js';

export interface MarketTopicProps {
  /** VPC whose private subnets host the cluster's endpoints. */
  readonly vpc: IVpc;
  /**
   * Topic that carries the market events (created by the first producer; MSK Serverless has no auto-create).
   * @default 'market-events'
   */
  readonly topicName?: string;
}

/** Port of MSK's IAM-authenticated listener. */
export const MSK_IAM_PORT = 9098;

/**
 * The Kafka choice of market stream: an MSK Serverless cluster with IAM authentication,
 * reachable from inside the VPC only.
 */
export class MarketTopic extends Construct {
  readonly clusterArn: string;
  readonly clusterName: string;
  readonly topicName: string;
  readonly securityGroup: ISecurityGroup;

  constructor(scope: Construct, id: string, props: MarketTopicProps) {
    super(scope, id);
    this.topicName = props.topicName ?? 'market-events';
    if (!/^[a-zA-Z0-9._-]{1,249}$/.test(this.topicName)) {
      throw new InvalidPropsError(`${id} topicName '${this.topicName}' is not a Kafka topic name (letters, digits, . _ -)`);
    }
    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'MSK Serverless: IAM-authenticated clients inside the VPC',
      allowAllOutbound: false,
    });
    this.securityGroup.addIngressRule(Peer.ipv4(props.vpc.vpcCidrBlock), Port.tcp(MSK_IAM_PORT), 'Kafka clients in the VPC');
    this.clusterName = `${Stack.of(this).stackName}-market`.slice(0, 64);
    const cluster = new CfnServerlessCluster(this, 'Cluster', {
      clusterName: this.clusterName,
      clientAuthentication: { sasl: { iam: { enabled: true } } },
      vpcConfigs: [
        {
          subnetIds: props.vpc.selectSubnets({ subnetType: SubnetType.PRIVATE_WITH_EGRESS }).subnetIds,
          securityGroups: [this.securityGroup.securityGroupId],
        },
      ],
    });
    this.clusterArn = cluster.attrArn;
  }

  /** Lets `grantee` write market events to the topic. */
  grantProduce(grantee: IGrantable): Grant {
    return this.grant(grantee, ['kafka-cluster:WriteData', 'kafka-cluster:CreateTopic']);
  }

  /** Lets `grantee` read the topic as a consumer group (what Lambda's event source does for a writer). */
  grantConsume(grantee: IGrantable): Grant {
    return this.grant(grantee, ['kafka-cluster:ReadData', 'kafka-cluster:DescribeGroup', 'kafka-cluster:AlterGroup']);
  }

  private grant(grantee: IGrantable, actions: string[]): Grant {
    const { region, account, partition } = Stack.of(this);
    // the cluster's UUID is known only after creation, hence the wildcard in topic and group ARNs
    const base = `arn:${partition}:kafka:${region}:${account}`;
    return Grant.addToPrincipal({
      grantee,
      actions: ['kafka-cluster:Connect', 'kafka-cluster:DescribeCluster', 'kafka-cluster:DescribeTopic', ...actions],
      resourceArns: [
        this.clusterArn,
        `${base}:topic/${this.clusterName}/*/${this.topicName}`,
        `${base}:group/${this.clusterName}/*/*`,
      ],
    });
  }
}
