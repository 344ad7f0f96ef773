// SPDX-License-Identifier: GPL-2.0
/*
 * kh_greeter: the sample module of examples/module-repo, a module repository that
 * tests itself with kmod-harness's GitHub Action. It greets `name` (a module
 * parameter) `times` times on load, and exposes the count in sysfs.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static char *name = "world";
module_param(name, charp, 0444);
MODULE_PARM_DESC(name, "who to greet");

static int times = 1;
module_param(times, int, 0444);
MODULE_PARM_DESC(times, "how many greetings (1-5)");

static int __init kh_greeter_init(void)
{
	int i;

	if (times < 1 || times > 5) {
		pr_err("kh_greeter: times=%d is out of range 1-5\n", times);
		return -EINVAL;
	}
	for (i = 1; i <= times; i++)
		pr_info("kh_greeter: hello, %s (%d of %d)\n", name, i, times);
	return 0;
}

static void __exit kh_greeter_exit(void)
{
	pr_info("kh_greeter: goodbye, %s\n", name);
}

module_init(kh_greeter_init);
module_exit(kh_greeter_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmod-harness sample: greets a module parameter");
