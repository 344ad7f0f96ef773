// SPDX-License-Identifier: GPL-2.0
/*
 * netlink_kernel - a tiny netlink echo module (protocol 30).
 *
 * Port of the module from the "Netlink Communication between Kernel and
 * User space" blog post, with its defects fixed:
 *
 *  - the reply goes to the sender's socket port (NETLINK_CB(skb).portid),
 *    never to the header's nlmsg_pid: with nlmsg_pid == 0 the blog's module
 *    sends the reply to its own kernel socket and recurses until the stack
 *    overflows, and any other value lets a client aim replies at somebody
 *    else's socket;
 *  - every message is length-checked before it is read (same rules as
 *    netlink_rcv_skb()), and several messages in one skb are each handled;
 *  - the payload is printed bounded by its length and first NUL;
 *  - the reply payload is NUL-terminated ("Hello msg from kernel\0");
 *  - no strncpy(), which no longer exists in 7.x kernels;
 *  - init returns a real errno when the kernel socket cannot be created.
 *
 * The printk trail of well-formed traffic is kept identical to the blog's,
 * including the trailing space of the first init line.
 *
 * netlink_rcv_skb() is deliberately not used: it silently skips messages
 * without NLM_F_REQUEST and messages whose type is below NLMSG_MIN_TYPE,
 * and the blog's client sends type 0 with no flags.
 */

#include <linux/errno.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/netlink.h>
#include <linux/printk.h>
#include <linux/skbuff.h>
#include <linux/string.h>
#include <linux/types.h>
#include <net/net_namespace.h>
#include <net/netlink.h>
#include <net/sock.h>

/* Must be below MAX_LINKS (32) and not used by an in-tree family. */
#define MY_NETLINK 30

/*
 * Longest payload prefix handed to printk. A printk record holds about 1 KiB
 * of text anyway, and vsnprintf() WARNs on a "%.*s" precision above 32767,
 * which a 64 KiB payload would otherwise reach.
 */
#define MY_PRINT_MAX 1024

static const char reply_msg[] = "Hello msg from kernel";

static struct sock *nl_sk;

/* Send the fixed reply to the socket that sent us a message. */
static void mynetlink_send_reply(u32 portid)
{
	struct sk_buff *skb_out;
	struct nlmsghdr *nlh;
	int res;

	/* The payload includes the terminating NUL: 22 bytes. */
	skb_out = nlmsg_new(sizeof(reply_msg), GFP_KERNEL);
	if (!skb_out) {
		pr_err("Failed to allocate new skb\n");
		return;
	}

	/* Same header as the blog: pid 0, seq 0, type NLMSG_DONE, no flags. */
	nlh = nlmsg_put(skb_out, 0, 0, NLMSG_DONE, sizeof(reply_msg), 0);
	if (!nlh) {
		kfree_skb(skb_out);
		pr_err("Failed to allocate new skb\n");
		return;
	}

	NETLINK_CB(skb_out).dst_group = 0;
	memcpy(nlmsg_data(nlh), reply_msg, sizeof(reply_msg));

	/* nlmsg_unicast() consumes skb_out whether or not it succeeds. */
	res = nlmsg_unicast(nl_sk, skb_out, portid);
	if (res < 0)
		pr_info("Error while sending back to user\n");
}

static void myNetLink_recv_msg(struct sk_buff *skb)
{
	u32 portid = NETLINK_CB(skb).portid;
	const unsigned char *data = skb->data;
	unsigned int remaining = skb->len;

	/*
	 * Userspace senders always have a non-zero port (netlink_sendmsg()
	 * autobinds). Port 0 is the kernel socket itself: replying there would
	 * feed the reply back into this function, so never do it.
	 */
	if (!portid) {
		pr_warn_ratelimited(KBUILD_MODNAME
				    ": dropping message from port 0\n");
		return;
	}

	while (remaining > 0) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)data;
		unsigned int msglen;
		const char *payload;
		size_t plen;

		if (remaining < NLMSG_HDRLEN ||
		    nlh->nlmsg_len < NLMSG_HDRLEN ||
		    nlh->nlmsg_len > remaining) {
			pr_warn_ratelimited(KBUILD_MODNAME
					    ": dropping malformed message (len %u, nlmsg_len %u)\n",
					    remaining,
					    remaining >= sizeof(nlh->nlmsg_len) ?
					    nlh->nlmsg_len : 0);
			return;
		}

		/* Print up to the payload's end or first NUL, whichever is first. */
		payload = nlmsg_data(nlh);
		plen = strnlen(payload, nlmsg_len(nlh));
		if (plen > MY_PRINT_MAX)
			plen = MY_PRINT_MAX;

		pr_info("Entering: %s\n", __func__);
		pr_info("MyNetlink has received: %.*s\n", (int)plen, payload);

		mynetlink_send_reply(portid);

		/* Next message starts at the aligned end of this one. */
		msglen = NLMSG_ALIGN(nlh->nlmsg_len);
		if (msglen > remaining)
			msglen = remaining;
		data += msglen;
		remaining -= msglen;
	}
}

static int __init myNetLink_init(void)
{
	struct netlink_kernel_cfg cfg = {
		.input = myNetLink_recv_msg,
	};

	nl_sk = netlink_kernel_create(&init_net, MY_NETLINK, &cfg);
	/* The blog's line ends in a space; tests expect it, so keep it. */
	printk(KERN_DEFAULT "Entering: %s, protocol family = %d%s\n",
	       __func__, MY_NETLINK, " ");
	if (!nl_sk) {
		pr_alert("Error creating socket.\n");
		return -ENOMEM;
	}

	printk(KERN_DEFAULT "MyNetLink Init OK!\n");
	return 0;
}

static void __exit mynetlink_exit(void)
{
	pr_info("exiting myNetLink module\n");
	netlink_kernel_release(nl_sk);
}

module_init(myNetLink_init);
module_exit(mynetlink_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmod-harness developers");
MODULE_DESCRIPTION("Netlink echo module on protocol 30 (fixed port of the netlink blog example)");
MODULE_ALIAS_NET_PF_PROTO(PF_NETLINK, MY_NETLINK);
