/* SPDX-License-Identifier: GPL-2.0-only */
/* <linux/pgtable.h> for the upstream allocator files: see zfuzz_shim.h. */
#include "zfuzz_shim.h"
