// SPDX-License-Identifier: GPL-2.0
/*
 * faulty - test fixture for `harness faults`: two bugs on error paths that no
 * plain run reaches, because allocations do not fail in a test VM.
 *
 * 1. init leaks its state when the second allocation fails (kmemleak finds it
 *    once the module is gone): the line marked "fault site: init leak".
 * 2. writing to /proc/faulty frees the copy twice when the second allocation
 *    fails (KASAN reports a double-free): the line marked "fault site: write
 *    double free".
 *
 * Built with -DFAULTY_FIXED (faulty/fixed.toml) both error paths are right, and
 * a fault walk must find nothing. Built with -DFAULTY_OOPS (faulty/oops.toml) the
 * write path also uses the second allocation before checking it: a NULL
 * dereference that kills the guest (every guest boots with oops=panic). Never load
 * this module outside a throwaway VM.
 */

#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

struct faulty_state {
	char *name;
	unsigned long writes;
};

static struct faulty_state *state;
static struct proc_dir_entry *entry;

static ssize_t faulty_write(struct file *file, const char __user *ubuf, size_t len, loff_t *off)
{
	char *copy, *msg;
	ssize_t ret;

	if (len > 256)
		return -EINVAL;
	copy = kmalloc(len + 1, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	if (copy_from_user(copy, ubuf, len)) {
		ret = -EFAULT;
		goto out;
	}
	copy[len] = '\0';
	msg = kasprintf(GFP_KERNEL, "faulty: %s got %s", state->name, strim(copy)); /* fault site: write double free */
#ifdef FAULTY_OOPS
	pr_info("faulty: message of %zu bytes\n", strlen(msg)); /* oops.toml: msg may be NULL here */
#endif
	if (!msg) {
#ifndef FAULTY_FIXED
		kfree(copy); /* the bug: "out" frees it again */
#endif
		ret = -ENOMEM;
		goto out;
	}
	state->writes++;
	pr_info("%s (write %lu)\n", msg, state->writes);
	kfree(msg);
	ret = len;
out:
	kfree(copy);
	return ret;
}

static const struct proc_ops faulty_ops = {
	.proc_write = faulty_write,
};

static int __init faulty_init(void)
{
	struct faulty_state *s;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	s->name = kstrdup(KBUILD_MODNAME, GFP_KERNEL); /* fault site: init leak */
	if (!s->name) {
#ifdef FAULTY_FIXED
		kfree(s);
#endif
		return -ENOMEM; /* the bug: s is leaked */
	}
	state = s;
	entry = proc_create("faulty", 0200, NULL, &faulty_ops);
	if (!entry) {
		kfree(s->name);
		kfree(s);
		state = NULL;
		return -ENOMEM;
	}
	pr_info("faulty: ready\n");
	return 0;
}

static void __exit faulty_exit(void)
{
	proc_remove(entry);
	kfree(state->name);
	kfree(state);
	pr_info("faulty: exit\n");
}

module_init(faulty_init);
module_exit(faulty_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmod-harness test fixture: a leak and a double free on error paths");
