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
 * What is read from a message and what is sent back live in netlink_msg.h,
 * where the KUnit suite (netlink_kernel_test.c) checks them without a socket.
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

#include "netlink_msg.h"

static struct sock *nl_sk;

/* Send the fixed reply to the socket that sent us a message. */
static void mynetlink_send_reply(u32 portid)
{
	struct sk_buff *skb_out;
	int res;

	skb_out = mynetlink_build_reply(GFP_KERNEL);
	if (!skb_out) {
		pr_err("Failed to allocate new skb\n");
		return;
	}

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
		struct mynetlink_msg msg;

		if (mynetlink_parse(data, remaining, &msg)) {
			pr_warn_ratelimited(KBUILD_MODNAME
					    ": dropping malformed message (len %u, nlmsg_len %u)\n",
					    remaining,
					    remaining >= sizeof(__u32) ?
					    ((const struct nlmsghdr *)data)->nlmsg_len : 0);
			return;
		}

		pr_info("Entering: %s\n", __func__);
		pr_info("MyNetlink has received: %.*s\n", (int)msg.print_len, msg.payload);

		mynetlink_send_reply(portid);

		data += msg.consumed;
		remaining -= msg.consumed;
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
