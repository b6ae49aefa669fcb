/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Included before each upstream file (-include): the symbols the upstream files export get an
 * upstream_ prefix, so that they link into one binary with the project's own zsmalloc, zbud and
 * zpool (fuzz/api's Subjects drive both). The kernel's include/linux/zsmalloc.h and zpool.h are
 * read with the same names.
 */
#ifndef ZFUZZ_UPSTREAM_RENAMES_H
#define ZFUZZ_UPSTREAM_RENAMES_H
#define zs_create_pool upstream_zs_create_pool
#define zs_destroy_pool upstream_zs_destroy_pool
#define zs_malloc upstream_zs_malloc
#define zs_free upstream_zs_free
#define zs_huge_class_size upstream_zs_huge_class_size
#define zs_map_object upstream_zs_map_object
#define zs_unmap_object upstream_zs_unmap_object
#define zs_get_total_pages upstream_zs_get_total_pages
#define zs_compact upstream_zs_compact
#define zs_lookup_class_index upstream_zs_lookup_class_index
#define zs_pool_stats upstream_zs_pool_stats
#define zs_mapmode upstream_zs_mapmode
#define ZS_MM_RW UPSTREAM_ZS_MM_RW
#define ZS_MM_RO UPSTREAM_ZS_MM_RO
#define ZS_MM_WO UPSTREAM_ZS_MM_WO
#define zs_pool upstream_zs_pool
#define zpool upstream_zpool
#define zpool_driver upstream_zpool_driver
#define zpool_mapmode upstream_zpool_mapmode
#define ZPOOL_MM_RW UPSTREAM_ZPOOL_MM_RW
#define ZPOOL_MM_RO UPSTREAM_ZPOOL_MM_RO
#define ZPOOL_MM_WO UPSTREAM_ZPOOL_MM_WO
#define ZPOOL_MM_DEFAULT UPSTREAM_ZPOOL_MM_DEFAULT
#define zpool_register_driver upstream_zpool_register_driver
#define zpool_unregister_driver upstream_zpool_unregister_driver
#define zpool_has_pool upstream_zpool_has_pool
#define zpool_create_pool upstream_zpool_create_pool
#define zpool_destroy_pool upstream_zpool_destroy_pool
#define zpool_get_type upstream_zpool_get_type
#define zpool_malloc_support_movable upstream_zpool_malloc_support_movable
#define zpool_malloc upstream_zpool_malloc
#define zpool_free upstream_zpool_free
#define zpool_map_handle upstream_zpool_map_handle
#define zpool_unmap_handle upstream_zpool_unmap_handle
#define zpool_get_total_pages upstream_zpool_get_total_pages
#define zpool_can_sleep_mapped upstream_zpool_can_sleep_mapped
#endif
