// SPDX-License-Identifier: GPL-2.0
/*
 * netlink_kernel_test - KUnit suite for netlink_kernel's message handling.
 *
 * Checks what netlink_msg.h decides, on buffers built here, with no socket:
 * which messages are refused, how much of a payload is printed, where the
 * next message starts, and the reply's header and payload. Built only for
 * kernels with CONFIG_KUNIT (see the Makefile); its cases run when it is
 * loaded, and print KTAP into the kernel log.
 */

#include <kunit/test.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "netlink_msg.h"

/* Room for a few messages; 4-byte aligned like an skb's data. */
#define BUF_SIZE 4096

struct buf {
	unsigned char data[BUF_SIZE] __aligned(4);
};

/* A message at @at: header with nlmsg_len = NLMSG_HDRLEN + @len, then @len bytes of @payload. */
static struct nlmsghdr *put_msg(unsigned char *at, const void *payload, unsigned int len)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)at;

	memset(nlh, 0, NLMSG_HDRLEN);
	nlh->nlmsg_len = NLMSG_HDRLEN + len;
	memcpy(at + NLMSG_HDRLEN, payload, len);
	return nlh;
}

static struct buf *new_buf(struct kunit *test)
{
	struct buf *b = kunit_kzalloc(test, sizeof(*b), GFP_KERNEL);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, b);
	memset(b->data, 'X', sizeof(b->data));	/* what lies past a message must never be read */
	return b;
}

static void parse_blog_hello(struct kunit *test)
{
	static const char hello[] = "Hello this is a msg from userspace";
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;

	put_msg(b->data, hello, sizeof(hello));
	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data, NLMSG_SPACE(sizeof(hello)), &msg), 0);
	KUNIT_EXPECT_EQ(test, msg.print_len, strlen(hello));
	KUNIT_EXPECT_EQ(test, strncmp(msg.payload, hello, msg.print_len), 0);
	KUNIT_EXPECT_EQ(test, msg.consumed, (unsigned int)NLMSG_SPACE(sizeof(hello)));
}

static void parse_refuses_short_buffer(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;

	put_msg(b->data, "", 0);
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, 0, &msg), -EINVAL);
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, 4, &msg), -EINVAL);
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, NLMSG_HDRLEN - 1, &msg), -EINVAL);
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, NLMSG_HDRLEN, &msg), 0);
}

static void parse_refuses_impossible_nlmsg_len(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;
	struct nlmsghdr *nlh = put_msg(b->data, "abcd", 4);

	nlh->nlmsg_len = NLMSG_HDRLEN - 1;	/* shorter than its own header */
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, 64, &msg), -EINVAL);
	nlh->nlmsg_len = 65;			/* longer than the skb */
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, 64, &msg), -EINVAL);
	nlh->nlmsg_len = 64;			/* exactly the skb */
	KUNIT_EXPECT_EQ(test, mynetlink_parse(b->data, 64, &msg), 0);
}

static void parse_prints_up_to_first_nul(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;

	put_msg(b->data, "ab\0cd", 5);
	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data, NLMSG_SPACE(5), &msg), 0);
	KUNIT_EXPECT_EQ(test, msg.print_len, (size_t)2);
}

static void parse_without_nul_stops_at_payload_end(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;

	put_msg(b->data, "abcd", 4);	/* no NUL: 'X' follows in the buffer */
	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data, BUF_SIZE, &msg), 0);
	KUNIT_EXPECT_EQ(test, msg.print_len, (size_t)4);
}

static void parse_caps_what_is_printed(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg msg;
	struct nlmsghdr *nlh = put_msg(b->data, "", 0);

	nlh->nlmsg_len = NLMSG_HDRLEN + 2000;	/* 2000 bytes of 'X', no NUL */
	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data, BUF_SIZE, &msg), 0);
	KUNIT_EXPECT_EQ(test, msg.print_len, (size_t)MY_PRINT_MAX);
}

static void parse_finds_the_next_message_aligned(struct kunit *test)
{
	struct buf *b = new_buf(test);
	struct mynetlink_msg first, second;
	unsigned int total;

	put_msg(b->data, "hello", 5);	/* 21 bytes, the next one at 24 */
	put_msg(b->data + NLMSG_SPACE(5), "world", 6);
	total = NLMSG_SPACE(5) + NLMSG_HDRLEN + 6;

	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data, total, &first), 0);
	KUNIT_EXPECT_EQ(test, first.consumed, (unsigned int)NLMSG_SPACE(5));
	KUNIT_EXPECT_EQ(test, first.print_len, (size_t)5);
	KUNIT_ASSERT_EQ(test, mynetlink_parse(b->data + first.consumed, total - first.consumed, &second), 0);
	KUNIT_EXPECT_EQ(test, second.print_len, (size_t)5);
	KUNIT_EXPECT_EQ(test, strncmp(second.payload, "world", 5), 0);
	/* The last message's padding is not in the skb: never step past its end. */
	KUNIT_EXPECT_EQ(test, second.consumed, total - first.consumed);
}

static void reply_is_the_blogs_hello(struct kunit *test)
{
	struct sk_buff *skb = mynetlink_build_reply(GFP_KERNEL);
	struct nlmsghdr *nlh;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, skb);
	nlh = nlmsg_hdr(skb);
	KUNIT_EXPECT_EQ(test, skb->len, (unsigned int)NLMSG_SPACE(sizeof(MY_REPLY)));
	KUNIT_EXPECT_EQ(test, nlh->nlmsg_len, (__u32)NLMSG_LENGTH(sizeof(MY_REPLY)));
	KUNIT_EXPECT_EQ(test, nlh->nlmsg_type, (__u16)NLMSG_DONE);
	KUNIT_EXPECT_EQ(test, nlh->nlmsg_flags, (__u16)0);
	KUNIT_EXPECT_EQ(test, nlh->nlmsg_pid, (__u32)0);
	KUNIT_EXPECT_EQ(test, nlh->nlmsg_seq, (__u32)0);
	KUNIT_EXPECT_EQ(test, NETLINK_CB(skb).dst_group, (__u32)0);
	/* 22 bytes: the text and its NUL, which the blog's module left out. */
	KUNIT_EXPECT_EQ(test, sizeof(MY_REPLY), (size_t)22);
	KUNIT_EXPECT_MEMEQ(test, nlmsg_data(nlh), MY_REPLY, sizeof(MY_REPLY));
	kfree_skb(skb);
}

static struct kunit_case netlink_kernel_cases[] = {
	KUNIT_CASE(parse_blog_hello),
	KUNIT_CASE(parse_refuses_short_buffer),
	KUNIT_CASE(parse_refuses_impossible_nlmsg_len),
	KUNIT_CASE(parse_prints_up_to_first_nul),
	KUNIT_CASE(parse_without_nul_stops_at_payload_end),
	KUNIT_CASE(parse_caps_what_is_printed),
	KUNIT_CASE(parse_finds_the_next_message_aligned),
	KUNIT_CASE(reply_is_the_blogs_hello),
	{}
};

static struct kunit_suite netlink_kernel_suite = {
	.name = "netlink_kernel",
	.test_cases = netlink_kernel_cases,
};

kunit_test_suite(netlink_kernel_suite);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmod-harness developers");
MODULE_DESCRIPTION("KUnit suite for netlink_kernel's message handling (netlink_msg.h)");
