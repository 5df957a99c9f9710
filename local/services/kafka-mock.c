/*
 * A Kafka-protocol broker for tests: librdkafka's in-process mock cluster.
 *
 *   kafka-mock [-b BROKERS] [-o BOOTSTRAP_FILE] [-t TOPIC:PARTITIONS]...
 *
 * Starts a mock cluster of BROKERS brokers (default 1) listening on
 * 127.0.0.1 (ports chosen by the kernel: librdkafka 2.0 has no API to fix
 * them), prints the bootstrap list ("127.0.0.1:PORT[,...]") on stdout and,
 * with -o, writes it to BOOTSTRAP_FILE (atomically, via a temporary file).
 * Topics named with -t are created up front; others are auto-created on first
 * use (4 partitions). The mock does not implement the CreateTopics admin API.
 * Runs until SIGTERM or SIGINT, then removes BOOTSTRAP_FILE.
 *
 * Built by local/services/services.sh:  gcc -O2 -o kafka-mock kafka-mock.c -lrdkafka
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(const char *prog) {
  fprintf(stderr, "usage: %s [-b BROKERS] [-o BOOTSTRAP_FILE] [-t TOPIC:PARTITIONS]...\n", prog);
  exit(2);
}

int main(int argc, char **argv) {
  int brokers = 1;
  const char *out_path = NULL;
  const char *topics[64];
  int topic_cnt = 0;
  char errstr[512];
  int opt;

  while ((opt = getopt(argc, argv, "b:o:t:h")) != -1) {
    switch (opt) {
      case 'b': brokers = atoi(optarg); break;
      case 'o': out_path = optarg; break;
      case 't':
        if (topic_cnt == (int)(sizeof topics / sizeof topics[0])) usage(argv[0]);
        topics[topic_cnt++] = optarg;
        break;
      default: usage(argv[0]);
    }
  }
  if (brokers < 1 || brokers > 9) usage(argv[0]);

  /* Block the stop signals before librdkafka starts its threads, so that they
   * inherit the mask and only sigsuspend() below ever receives them. */
  sigset_t stop_set, wait_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_set, &wait_set);
  sigdelset(&wait_set, SIGTERM);
  sigdelset(&wait_set, SIGINT);

  /* The mock cluster needs an rd_kafka_t for its bookkeeping; it never connects anywhere. */
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka-mock: %s\n", errstr);
    return 1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "kafka-mock: rd_kafka_new: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mcluster) {
    fprintf(stderr, "kafka-mock: rd_kafka_mock_cluster_new failed\n");
    rd_kafka_destroy(rk);
    return 1;
  }

  for (int i = 0; i < topic_cnt; i++) {
    char name[256];
    int partitions = 1;
    const char *colon = strrchr(topics[i], ':');
    size_t len = colon ? (size_t)(colon - topics[i]) : strlen(topics[i]);
    if (len == 0 || len >= sizeof name) usage(argv[0]);
    memcpy(name, topics[i], len);
    name[len] = '\0';
    if (colon) partitions = atoi(colon + 1);
    if (partitions < 1) usage(argv[0]);
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(mcluster, name, partitions, brokers < 3 ? brokers : 3);
    if (err) {
      fprintf(stderr, "kafka-mock: creating topic %s: %s\n", name, rd_kafka_err2str(err));
      return 1;
    }
  }

  const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
  if (out_path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", bootstraps) < 0 || fclose(f) != 0 || rename(tmp, out_path) != 0) {
      perror("kafka-mock: writing the bootstrap file");
      return 1;
    }
  }
  printf("%s\n", bootstraps);
  fflush(stdout);

  /* Wait for the (still blocked) stop signals atomically: no lost wake-up. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  while (!stop_requested) sigsuspend(&wait_set);

  if (out_path) unlink(out_path);
  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
