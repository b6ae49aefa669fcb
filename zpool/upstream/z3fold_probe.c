/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * mm/z3fold.c, unchanged, compiled in this translation unit (as zsmalloc_probe.c does for
 * zsmalloc.c), then one read-only probe for the bridge's leak report: how many handles a
 * z3fold_buddy_slots object still holds. An object left in the z3fold_handle cache at destroy
 * that holds none is the signature of upstream finding Z2 (docs/upstream-findings.md).
 */
#include "mm/z3fold.c"

int upstream_z3fold_slots_in_use(const void *obj);

int upstream_z3fold_slots_in_use(const void *obj)
{
	const struct z3fold_buddy_slots *slots = obj;
	int i, n = 0;

	for (i = 0; i <= BUDDY_MASK; i++)
		n += slots->slot[i] != 0;
	return n;
}
