// SPDX-License-Identifier: GPL-2.0
/*
 * netlink_client - talk to netlink_kernel.ko on netlink protocol 30.
 *
 * Port of the blog's client, with the same output lines, but:
 *  - binds port 0 and reads the port the kernel picked back with
 *    getsockname() (binding getpid() fails if that port is taken);
 *  - bounded input with fgets(); lines longer than 1023 bytes are skipped;
 *    the loop ends at end of input;
 *  - every system call is checked, replies are validated before use;
 *  - a receive timeout, so a lost reply cannot hang it forever.
 *
 * Usage: netlink_client [-m MESSAGE] [-c COUNT [-s]] [-t SECONDS] [-q]
 *   no option      the blog's behaviour: hello, then one message per line
 *   -m MESSAGE     send MESSAGE instead of the hello, do not read stdin
 *   -c COUNT       send the message COUNT times (each waits for its reply)
 *                  and print "sent N received N" at the end
 *   -t SECONDS     reply timeout (default 5, 0 waits forever)
 *   -q             only print the final "sent N received N" line
 *   -s             with -c: time each round trip (CLOCK_MONOTONIC) on a
 *                  socket connected to the kernel and print only one JSON
 *                  line at the end, with the keys bench/netlink_stats.py
 *                  prints: client, messages, seconds, msgs_per_s, p50_us,
 *                  p99_us, max_us (nearest-rank percentiles)
 *
 * Exit codes (same as netlink_client.py): 0 ok, 2 usage, 3 protocol not
 * available (module not loaded), 4 no reply in time, 5 other system error,
 * 6 malformed reply.
 */

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

#define NETLINK_USER 30		/* same protocol as the kernel module */
#define MAX_PAYLOAD 1024	/* payload room, NUL included */

#define EXIT_OK 0
#define EXIT_USAGE 2
#define EXIT_NOT_LOADED 3
#define EXIT_TIMEOUT 4
#define EXIT_OS_ERROR 5
#define EXIT_MALFORMED 6

#define HELLO "Hello this is a msg from userspace"

struct client {
	int fd;
	unsigned int port;
	int quiet;
	/* request frame: header + MAX_PAYLOAD bytes, always NLMSG_SPACE(1024) */
	union {
		struct nlmsghdr hdr;
		unsigned char buf[NLMSG_SPACE(MAX_PAYLOAD)];
	} req;
	/* reply buffer; generously sized so nothing is truncated */
	union {
		struct nlmsghdr hdr;
		unsigned char buf[8192];
	} resp;
};

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [-m MESSAGE] [-c COUNT [-s]] [-t SECONDS] [-q]\n"
		"  -m MESSAGE  send MESSAGE instead of the hello, no prompt\n"
		"  -c COUNT    send the message COUNT times, each awaiting its reply\n"
		"  -t SECONDS  reply timeout (default 5, 0 = wait forever)\n"
		"  -q          quiet: only print \"sent N received N\"\n"
		"  -s          with -c: time each round trip, print one JSON line:\n"
		"              client, messages, seconds, msgs_per_s, p50_us, p99_us, max_us\n"
		"exit codes: 0 ok, 2 usage, 3 protocol %d not available (module not loaded),\n"
		"            4 no reply in time, 5 other system error, 6 malformed reply\n",
		prog, NETLINK_USER);
}

static int open_socket(struct client *c, unsigned int timeout_s)
{
	struct sockaddr_nl addr;
	socklen_t len = sizeof(addr);

	c->fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_USER);
	if (c->fd < 0) {
		if (errno == EPROTONOSUPPORT) {
			fprintf(stderr,
				"netlink protocol %d is not available (EPROTONOSUPPORT): is netlink_kernel.ko loaded?\n",
				NETLINK_USER);
			return EXIT_NOT_LOADED;
		}
		perror("socket(AF_NETLINK, SOCK_RAW)");
		return EXIT_OS_ERROR;
	}

	memset(&addr, 0, sizeof(addr));
	addr.nl_family = AF_NETLINK;
	addr.nl_pid = 0;	/* let the kernel pick a free port */
	if (bind(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("bind");
		return EXIT_OS_ERROR;
	}
	if (getsockname(c->fd, (struct sockaddr *)&addr, &len) < 0) {
		perror("getsockname");
		return EXIT_OS_ERROR;
	}
	c->port = addr.nl_pid;

	if (timeout_s > 0) {
		struct timeval tv = { .tv_sec = timeout_s, .tv_usec = 0 };

		if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
			       sizeof(tv)) < 0) {
			perror("setsockopt(SO_RCVTIMEO)");
			return EXIT_OS_ERROR;
		}
	}
	return EXIT_OK;
}

/* Build the NLMSG_SPACE(MAX_PAYLOAD) frame holding text (len < MAX_PAYLOAD). */
static void fill_frame(struct client *c, const char *text, size_t len)
{
	memset(c->req.buf, 0, sizeof(c->req.buf));
	c->req.hdr.nlmsg_len = NLMSG_SPACE(MAX_PAYLOAD);
	c->req.hdr.nlmsg_type = 0;
	c->req.hdr.nlmsg_flags = 0;
	c->req.hdr.nlmsg_seq = 0;
	c->req.hdr.nlmsg_pid = c->port;
	memcpy(NLMSG_DATA(&c->req.hdr), text, len);
}

/* Send one NLMSG_SPACE(MAX_PAYLOAD) frame holding text (len < MAX_PAYLOAD). */
static int send_text(struct client *c, const char *text, size_t len)
{
	struct sockaddr_nl dest;
	ssize_t ret;

	fill_frame(c, text, len);

	memset(&dest, 0, sizeof(dest));
	dest.nl_family = AF_NETLINK;
	dest.nl_pid = 0;	/* the kernel */
	dest.nl_groups = 0;	/* unicast */

	do {
		ret = sendto(c->fd, c->req.buf, c->req.hdr.nlmsg_len, 0,
			     (struct sockaddr *)&dest, sizeof(dest));
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		perror("sendto");
		return EXIT_OS_ERROR;
	}
	if (!c->quiet)
		printf("send ret: %zd\n", ret);
	return EXIT_OK;
}

/* Check the n bytes received in c->resp: lengths, then type NLMSG_DONE. */
static int check_reply(const struct client *c, ssize_t n)
{
	const struct nlmsghdr *nlh = &c->resp.hdr;

	if ((size_t)n < NLMSG_HDRLEN) {
		fprintf(stderr, "malformed reply: %zd bytes, shorter than a header\n", n);
		return EXIT_MALFORMED;
	}
	if (nlh->nlmsg_len < NLMSG_HDRLEN || nlh->nlmsg_len > (size_t)n) {
		fprintf(stderr, "malformed reply: nlmsg_len %u but %zd bytes received\n",
			nlh->nlmsg_len, n);
		return EXIT_MALFORMED;
	}
	if (nlh->nlmsg_type != NLMSG_DONE) {
		fprintf(stderr, "malformed reply: type %u, expected NLMSG_DONE (%d)\n",
			nlh->nlmsg_type, NLMSG_DONE);
		return EXIT_MALFORMED;
	}
	return EXIT_OK;
}

/* Wait for the kernel's reply, validate it and print its payload. */
static int recv_reply(struct client *c)
{
	struct sockaddr_nl from;
	socklen_t fromlen;
	const struct nlmsghdr *nlh = &c->resp.hdr;
	const char *payload;
	size_t plen;
	ssize_t n;
	int rc;

	for (;;) {
		fromlen = sizeof(from);
		n = recvfrom(c->fd, c->resp.buf, sizeof(c->resp.buf), 0,
			     (struct sockaddr *)&from, &fromlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			fprintf(stderr, "no reply from the kernel before the timeout\n");
			return EXIT_TIMEOUT;
		}
		if (n < 0) {
			perror("recvfrom");
			return EXIT_OS_ERROR;
		}
		/* Only the kernel (port 0) answers; ignore anybody else. */
		if (fromlen >= sizeof(from) && from.nl_pid != 0)
			continue;
		break;
	}

	rc = check_reply(c, n);
	if (rc)
		return rc;

	payload = NLMSG_DATA(nlh);
	plen = nlh->nlmsg_len - NLMSG_HDRLEN;
	plen = strnlen(payload, plen);
	if (!c->quiet)
		printf("Received message payload: %.*s\n", (int)plen, payload);
	return EXIT_OK;
}

/* One round trip; counters are bumped as each half succeeds. */
static int exchange(struct client *c, const char *text, size_t len,
		    int quoted, unsigned long *sent, unsigned long *received)
{
	int rc;

	if (!c->quiet) {
		if (quoted)
			printf("Sending message \" %s \" to kernel\n", text);
		else
			printf("Sending message to kernel\n");
	}
	rc = send_text(c, text, len);
	if (rc)
		return rc;
	(*sent)++;
	if (!c->quiet) {
		printf("Waiting for message from kernel\n");
		fflush(stdout);
	}
	rc = recv_reply(c);
	if (rc)
		return rc;
	(*received)++;
	return EXIT_OK;
}

/* Read lines from stdin until EOF and send each one. */
static int interactive(struct client *c, unsigned long *sent,
		       unsigned long *received)
{
	char line[MAX_PAYLOAD + 1];	/* 1023 bytes + '\n' + NUL */
	size_t len;
	int rc, ch;

	for (;;) {
		if (!c->quiet) {
			printf("Input your msg for sending to kernel: ");
			fflush(stdout);
		}
		if (!fgets(line, sizeof(line), stdin)) {
			if (ferror(stdin)) {
				perror("reading stdin");
				return EXIT_OS_ERROR;
			}
			if (!c->quiet)
				putchar('\n');
			return EXIT_OK;
		}

		len = strlen(line);
		if (len > 0 && line[len - 1] == '\n') {
			line[--len] = '\0';
			if (len > 0 && line[len - 1] == '\r')
				line[--len] = '\0';
		} else if (!feof(stdin)) {
			/* No newline in 1024 bytes: too long, drop the rest. */
			while ((ch = getchar()) != EOF && ch != '\n')
				;
			fprintf(stderr,
				"message too long (more than %d bytes): skipped\n",
				MAX_PAYLOAD - 1);
			continue;
		}
		if (len > MAX_PAYLOAD - 1) {
			fprintf(stderr,
				"message too long (more than %d bytes): skipped\n",
				MAX_PAYLOAD - 1);
			continue;
		}

		rc = exchange(c, line, len, 1, sent, received);
		if (rc)
			return rc;
	}
}

/* ---- -s: timed round trips ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest rank of n sorted values: ceil(p * n / 100), at least 1 (n > 0). */
static uint64_t percentile(const uint64_t *sorted, unsigned long n, unsigned int p)
{
	unsigned long rank = (n / 100) * p + ((n % 100) * p + 99) / 100;

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

/*
 * count round trips of the frame already in c->req, on a socket connected
 * to the kernel: lat[i] is round trip i in ns. *done is how many completed,
 * *wall the ns from before the first send to after the last reply.
 */
static int timed_round_trips(struct client *c, unsigned long count, uint64_t *lat,
			     unsigned long *done, uint64_t *wall)
{
	const size_t len = c->req.hdr.nlmsg_len;
	uint64_t start, t0, t1;
	unsigned long i;
	ssize_t n;
	int rc = EXIT_OK;

	start = now_ns();
	for (i = 0; i < count; i++) {
		t0 = now_ns();
		do {
			n = send(c->fd, c->req.buf, len, 0);
		} while (n < 0 && errno == EINTR);
		if (n < 0) {
			perror("send");
			rc = EXIT_OS_ERROR;
			break;
		}
		do {
			n = recv(c->fd, c->resp.buf, sizeof(c->resp.buf), 0);
		} while (n < 0 && errno == EINTR);
		t1 = now_ns();
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				fprintf(stderr, "no reply from the kernel before the timeout\n");
				rc = EXIT_TIMEOUT;
			} else {
				perror("recv");
				rc = EXIT_OS_ERROR;
			}
			break;
		}
		rc = check_reply(c, n);
		if (rc)
			break;
		lat[i] = t1 - t0;
	}
	*wall = now_ns() - start;
	*done = i;
	return rc;
}

static void print_us(const char *key, int have, uint64_t ns, const char *end)
{
	if (have)
		printf("\"%s\": %.3f%s", key, (double)ns / 1e3, end);
	else
		printf("\"%s\": null%s", key, end);
}

/* The JSON line of -s; sorts lat[0..n). Same keys as bench/netlink_stats.py prints. */
static void print_stats(uint64_t *lat, unsigned long n, uint64_t wall)
{
	double seconds = (double)wall / 1e9;

	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"client\": \"c\", \"messages\": %lu, \"seconds\": %.6f, \"msgs_per_s\": %.1f, ",
	       n, seconds, seconds > 0 ? (double)n / seconds : 0.0);
	print_us("p50_us", n > 0, n ? percentile(lat, n, 50) : 0, ", ");
	print_us("p99_us", n > 0, n ? percentile(lat, n, 99) : 0, ", ");
	print_us("max_us", n > 0, n ? lat[n - 1] : 0, "}\n");
	fflush(stdout);
}

static int run_stats(struct client *c, const char *message, size_t msglen,
		     unsigned long count, unsigned int timeout_s)
{
	struct sockaddr_nl kernel;
	uint64_t *lat, wall = 0;
	unsigned long done = 0;
	int rc;

	if (count > SIZE_MAX / sizeof(*lat)) {
		fprintf(stderr, "-c %lu: too many messages to time\n", count);
		return EXIT_USAGE;
	}
	lat = malloc(count * sizeof(*lat));
	if (!lat) {
		perror("malloc");
		return EXIT_OS_ERROR;
	}

	rc = open_socket(c, timeout_s);
	if (!rc) {
		memset(&kernel, 0, sizeof(kernel));
		kernel.nl_family = AF_NETLINK;	/* nl_pid 0: the kernel */
		if (connect(c->fd, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
			perror("connect");
			rc = EXIT_OS_ERROR;
		}
	}
	if (!rc) {
		fill_frame(c, message, msglen);	/* once: the payload never changes */
		rc = timed_round_trips(c, count, lat, &done, &wall);
	}
	if (c->fd >= 0 && close(c->fd) < 0 && !rc) {
		perror("close");
		rc = EXIT_OS_ERROR;
	}
	print_stats(lat, done, wall);
	free(lat);
	return rc;
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char *argv[])
{
	static struct client c;
	const char *message = NULL;
	unsigned long count = 1, timeout_s = 5;
	unsigned long sent = 0, received = 0;
	int have_count = 0, stats = 0, interactive_mode;
	size_t msglen;
	int opt, rc;

	while ((opt = getopt(argc, argv, "m:c:t:qsh")) != -1) {
		switch (opt) {
		case 'm':
			message = optarg;
			break;
		case 'c':
			if (parse_ulong(optarg, ULONG_MAX, &count) || count == 0) {
				fprintf(stderr, "%s: -c needs a positive integer\n", argv[0]);
				return EXIT_USAGE;
			}
			have_count = 1;
			break;
		case 't':
			if (parse_ulong(optarg, INT_MAX, &timeout_s)) {
				fprintf(stderr, "%s: -t needs a number of seconds >= 0\n", argv[0]);
				return EXIT_USAGE;
			}
			break;
		case 'q':
			c.quiet = 1;
			break;
		case 's':
			stats = 1;
			break;
		case 'h':
			usage(stdout, argv[0]);
			return EXIT_OK;
		default:
			usage(stderr, argv[0]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		usage(stderr, argv[0]);
		return EXIT_USAGE;
	}
	if (stats && !have_count) {
		fprintf(stderr, "%s: -s requires -c COUNT\n", argv[0]);
		usage(stderr, argv[0]);
		return EXIT_USAGE;
	}
	interactive_mode = !message && !have_count;
	if (!message)
		message = HELLO;
	msglen = strlen(message);
	if (msglen > MAX_PAYLOAD - 1) {
		fprintf(stderr, "%s: message too long (%zu bytes, max %d)\n",
			argv[0], msglen, MAX_PAYLOAD - 1);
		return EXIT_USAGE;
	}

	c.fd = -1;
	if (stats) {
		c.quiet = 1;
		return run_stats(&c, message, msglen, count, (unsigned int)timeout_s);
	}
	rc = open_socket(&c, (unsigned int)timeout_s);
	if (rc)
		goto out;

	/* The hello (or -m MESSAGE), COUNT times, printed as the blog does. */
	while (count-- > 0) {
		rc = exchange(&c, message, msglen, 0, &sent, &received);
		if (rc)
			goto out;
	}

	/* Like the blog, go on reading stdin unless -m or -c was given. */
	if (interactive_mode)
		rc = interactive(&c, &sent, &received);
	else
		rc = EXIT_OK;

out:
	if (c.fd >= 0 && close(c.fd) < 0 && !rc) {
		perror("close");
		rc = EXIT_OS_ERROR;
	}
	if (have_count || c.quiet)
		printf("sent %lu received %lu\n", sent, received);
	return rc;
}
