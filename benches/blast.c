// blast.c - bounded raw-frame generator for benches/live_capture.sh (not part of podwire).
// Sends 60-byte Ethernet/IPv4/UDP frames 10.244.9.101:40000-40063 -> 10.244.9.102:9 on IFACE
// with sendmmsg(2) on an AF_PACKET socket for SECONDS seconds at up to PPS frames/s (0 = as
// fast as possible), then prints the number of frames sent. Run it inside the sender's netns.
// Usage: blast IFACE DST_MAC SECONDS PPS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: blast IFACE DST_MAC SECONDS PPS\n"); return 2; }
  unsigned mac[6];
  if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) != 6) return 2;
  double seconds = atof(argv[3]);
  double pps = atof(argv[4]);
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) { perror("socket"); return 1; }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = if_nametoindex(argv[1]);
  sll.sll_halen = 6;
  for (int i = 0; i < 6; i++) sll.sll_addr[i] = mac[i];
  if (!sll.sll_ifindex) { perror("if_nametoindex"); return 1; }
  static uint8_t frames[BATCH][60];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (int i = 0; i < BATCH; i++) {
    uint8_t *f = frames[i];
    memset(f, 0, 60);
    for (int j = 0; j < 6; j++) f[j] = mac[j];
    f[6] = 0x02; f[11] = 0x01;  // source MAC 02:00:00:00:00:01
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14;
    ip[0] = 0x45; ip[3] = 46; ip[8] = 64; ip[9] = 17;
    ip[12] = 10; ip[13] = 244; ip[14] = 9; ip[15] = 101;
    ip[16] = 10; ip[17] = 244; ip[18] = 9; ip[19] = 102;
    uint32_t sum = 0;
    for (int j = 0; j < 20; j += 2) sum += (ip[j] << 8) | ip[j + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    sum = ~sum & 0xffff; ip[10] = sum >> 8; ip[11] = sum & 0xff;
    uint8_t *udp = ip + 20;
    uint16_t sport = 40000 + i;
    udp[0] = sport >> 8; udp[1] = sport & 0xff; udp[3] = 9; udp[5] = 26;
    iov[i].iov_base = f; iov[i].iov_len = 60;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &sll;
    msgs[i].msg_hdr.msg_namelen = sizeof sll;
  }
  double start = now(), end = start + seconds;
  unsigned long long sent = 0;
  for (;;) {
    double t = now();
    if (t >= end) break;
    if (pps > 0 && sent >= (t - start) * pps) { usleep(50); continue; }
    int n = sendmmsg(fd, msgs, BATCH, 0);
    if (n > 0) sent += n;
  }
  printf("%llu\n", sent);
  return 0;
}
