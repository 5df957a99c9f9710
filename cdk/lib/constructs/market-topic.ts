import { RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import { Grant } from 'aws-cdk-lib/aws-iam';
import { Peer, Port, SecurityGroup, SubnetType, type ISecurityGroup, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CfnServerlessCluster } from 'aws-cdk-lib/aws-msk';
import { AwsCustomResource, AwsCustomResourcePolicy, PhysicalResourceId } from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { nagArn } from '../nag-acknowledgements.js';
import { InvalidPropsError } from '../prop-checks.js';

export interface MarketTopicProps {
  /** VPC whose private subnets host the cluster's endpoints. */
  readonly vpc: IVpc;
  /**
   * Topic that carries the market events (created by the first producer; MSK Serverless has no auto-create).
   * @default 'market-events'
   */
  readonly topicName?: string;
  /**
   * Retention of the log group of the bootstrap-broker lookup (see `bootstrapBrokers`).
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Removal policy of that log group.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
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
  private brokers: string | undefined;
  private readonly logRetention: RetentionDays;
  private readonly removalPolicy: RemovalPolicy;

  constructor(scope: Construct, id: string, props: MarketTopicProps) {
    super(scope, id);
    this.topicName = props.topicName ?? 'market-events';
    this.logRetention = props.logRetention ?? RetentionDays.ONE_MONTH;
    this.removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    if (!/^[a-zA-Z0-9._-]{1,249}$/.test(this.topicName)) {
      throw new InvalidPropsError(`${id} topicName '${this.topicName}' is not a Kafka topic name (letters, digits, . _ -)`);
    }
    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'MSK Serverless: IAM-authenticated clients inside the VPC',
      allowAllOutbound: false,
    });
    this.securityGroup.addIngressRule(Peer.ipv4(props.vpc.vpcCidrBlock), Port.tcp(MSK_IAM_PORT), 'Kafka clients in the VPC');
    Validations.of(this.securityGroup).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: "The one ingress rule is the VPC's own CIDR on the IAM listener's port (a deploy-time value the rule cannot read), not 0.0.0.0/0.",
    });
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

  /**
   * Bootstrap brokers of the IAM listener (`host:9098`), as KAFKA_BROKERS takes them. CloudFormation has no
   * attribute for them, so the first use adds a custom resource that asks MSK (GetBootstrapBrokers) at deploy.
   */
  get bootstrapBrokers(): string {
    this.brokers ??= new AwsCustomResource(this, 'BootstrapBrokers', {
      onUpdate: {
        service: 'Kafka',
        action: 'getBootstrapBrokers',
        parameters: { ClusterArn: this.clusterArn },
        physicalResourceId: PhysicalResourceId.of(this.clusterName),
      },
      policy: AwsCustomResourcePolicy.fromSdkCalls({ resources: [this.clusterArn] }),
      // the SDK of the Lambda runtime: no npm install at deploy time
      installLatestAwsSdk: false,
      logGroup: new LogGroup(this, 'BootstrapBrokersLogs', { retention: this.logRetention, removalPolicy: this.removalPolicy }),
    }).getResponseField('BootstrapBrokerStringSaslIam');
    return this.brokers;
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
    const principal = grantee.grantPrincipal;
    if (principal instanceof Construct) {
      for (const resource of [`topic/${this.clusterName}/*/${this.topicName}`, `group/${this.clusterName}/*/*`]) {
        Validations.of(principal).acknowledge({
          id: `AwsSolutions-IAM5[Resource::${nagArn(Stack.of(this), 'kafka', resource)}]`,
          reason:
            "MSK topic and group ARNs contain the cluster's UUID, known only after creation: the wildcard stands for it (and, for groups, for the consumer group names Lambda generates), scoped to this cluster's name.",
        });
      }
    }
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
