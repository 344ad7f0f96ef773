/* SPDX-License-Identifier: GPL-2.0 */
/*
 * netlink_msg.h - netlink_kernel's message handling, without a socket.
 *
 * The parts of the module that decide what is read from a message and what is
 * sent back, as inline functions: netlink_kernel.c uses them on the skbs the
 * socket hands it, and the KUnit suite (netlink_kernel_test.c) on buffers it
 * builds itself.
 */
#ifndef NETLINK_MSG_H
#define NETLINK_MSG_H

#include <linux/errno.h>
#include <linux/gfp.h>
#include <linux/kernel.h>
#include <linux/netlink.h>
#include <linux/skbuff.h>
#include <linux/string.h>
#include <linux/types.h>
#include <net/netlink.h>

/* Must be below MAX_LINKS (32) and not used by an in-tree family. */
#define MY_NETLINK 30

/*
 * Longest payload prefix handed to printk. A printk record holds about 1 KiB
 * of text anyway, and vsnprintf() WARNs on a "%.*s" precision above 32767,
 * which a 64 KiB payload would otherwise reach.
 */
#define MY_PRINT_MAX 1024

/* The reply's payload, NUL included: 22 bytes. */
#define MY_REPLY "Hello msg from kernel"

/* One message found at the start of a buffer. */
struct mynetlink_msg {
	const char *payload;
	size_t print_len;	/* up to the payload's end or first NUL, at most MY_PRINT_MAX */
	unsigned int consumed;	/* where the next message starts: the aligned end, within the buffer */
};

/*
 * Check the message at @data (@remaining bytes left in the skb) with the same
 * length rules as netlink_rcv_skb(): 0 and @msg filled in, or -EINVAL when the
 * header does not fit or its nlmsg_len is impossible (then nothing past the
 * buffer may be read).
 */
static inline int mynetlink_parse(const unsigned char *data, unsigned int remaining,
				  struct mynetlink_msg *msg)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)data;

	if (remaining < NLMSG_HDRLEN || nlh->nlmsg_len < NLMSG_HDRLEN ||
	    nlh->nlmsg_len > remaining)
		return -EINVAL;

	msg->payload = nlmsg_data(nlh);
	msg->print_len = min_t(size_t, strnlen(msg->payload, nlmsg_len(nlh)), MY_PRINT_MAX);
	msg->consumed = min_t(unsigned int, NLMSG_ALIGN(nlh->nlmsg_len), remaining);
	return 0;
}

/*
 * The reply, as the blog's module builds it: pid 0, seq 0, type NLMSG_DONE,
 * no flags, payload MY_REPLY with its NUL. NULL when memory runs out.
 */
static inline struct sk_buff *mynetlink_build_reply(gfp_t gfp)
{
	struct sk_buff *skb;
	struct nlmsghdr *nlh;

	skb = nlmsg_new(sizeof(MY_REPLY), gfp);
	if (!skb)
		return NULL;

	nlh = nlmsg_put(skb, 0, 0, NLMSG_DONE, sizeof(MY_REPLY), 0);
	if (!nlh) {
		kfree_skb(skb);
		return NULL;
	}

	NETLINK_CB(skb).dst_group = 0;
	memcpy(nlmsg_data(nlh), MY_REPLY, sizeof(MY_REPLY));
	return skb;
}

#endif /* NETLINK_MSG_H */
