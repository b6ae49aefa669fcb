// SPDX-License-Identifier: GPL-2.0-only
// The upstream Subjects: Linux 6.12's own mm/zsmalloc.c, and mm/zpool.c over zsmalloc, zbud and
// z3fold (//zpool/upstream), behind the Subject interface of subject.h, so the op language runs
// one program on them alone (upstream_api_fuzz) or beside the project's model (the differential
// targets). Their call lines read as the kernel's, prefixed upstream_.
#ifndef FUZZ_API_UPSTREAM_SUBJECTS_H_
#define FUZZ_API_UPSTREAM_SUBJECTS_H_

namespace zfuzz {

// Initialises the upstream files (their module_init, once), registers the upstream kinds' maker
// with MakeSubject() and warms each kind once. Call after InitializeHarness() (the files see the
// virtual CPUs it sets up) and before the first upstream Subject is made.
void UseUpstreamSubjects();

}  // namespace zfuzz

#endif  // FUZZ_API_UPSTREAM_SUBJECTS_H_
