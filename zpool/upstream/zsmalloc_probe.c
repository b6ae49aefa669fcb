/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * mm/zsmalloc.c, unchanged, compiled in this translation unit (as the kernel's tools/testing/vma
 * includes mm/vma.c), then read-only probes of its private state for the differential targets:
 * a size class's geometry and statistics, read under the class lock as its debugfs file reads
 * them, without the cost of formatting that file after every operation.
 */
#include "mm/zsmalloc.c"

_Static_assert(NR_CLASS_STAT_TYPES == ZFUZZ_ZS_CLASS_STATS,
	       "the tree's class statistics differ from zfuzz_abi.h's");

int upstream_zs_class_probe(struct zs_pool *pool, unsigned int index,
			    struct upstream_zs_class *out);

int upstream_zs_class_probe(struct zs_pool *pool, unsigned int index,
			    struct upstream_zs_class *out)
{
	struct size_class *class;
	int type;

	if (index >= ZS_SIZE_CLASSES)
		return -EINVAL;
	class = pool->size_class[index];
	out->index = class->index;
	out->size = class->size;
	out->pages_per_zspage = class->pages_per_zspage;
	out->objs_per_zspage = class->objs_per_zspage;
	spin_lock(&class->lock);
	for (type = 0; type < NR_CLASS_STAT_TYPES; type++)
		out->stats[type] = class_stat_read(class, type);
	spin_unlock(&class->lock);
	return 0;
}
