// SPDX-License-Identifier: GPL-2.0
/*
 * kh_echo - an example module for kmod-harness: a misc character device,
 * /dev/kh_echo, that gives back the last thing written to it (at most 4 KiB).
 */

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>

#define KH_ECHO_MAX 4096

static char kh_buf[KH_ECHO_MAX];
static size_t kh_len;
static DEFINE_MUTEX(kh_lock);

static ssize_t kh_echo_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	if (count > KH_ECHO_MAX)
		return -EFBIG;
	mutex_lock(&kh_lock);
	if (copy_from_user(kh_buf, ubuf, count)) {
		mutex_unlock(&kh_lock);
		return -EFAULT;
	}
	kh_len = count;
	mutex_unlock(&kh_lock);
	pr_info("kh_echo: wrote %zu bytes\n", count);
	return count;
}

static ssize_t kh_echo_read(struct file *file, char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	ssize_t ret;

	mutex_lock(&kh_lock);
	ret = simple_read_from_buffer(ubuf, count, ppos, kh_buf, kh_len);
	mutex_unlock(&kh_lock);
	if (ret > 0)
		pr_info("kh_echo: read %zd bytes\n", ret);
	return ret;
}

static const struct file_operations kh_echo_fops = {
	.owner = THIS_MODULE,
	.read = kh_echo_read,
	.write = kh_echo_write,
	.llseek = default_llseek,
};

static struct miscdevice kh_echo_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kh_echo",
	.fops = &kh_echo_fops,
	.mode = 0666,
};

static int __init kh_echo_init(void)
{
	int ret = misc_register(&kh_echo_dev);

	if (ret) {
		pr_err("kh_echo: misc_register failed: %d\n", ret);
		return ret;
	}
	pr_info("kh_echo: registered /dev/kh_echo\n");
	return 0;
}

static void __exit kh_echo_exit(void)
{
	misc_deregister(&kh_echo_dev);
	pr_info("kh_echo: unregistered\n");
}

module_init(kh_echo_init);
module_exit(kh_echo_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("kmod-harness developers");
MODULE_DESCRIPTION("Example character device for kmod-harness: echoes the last write");
