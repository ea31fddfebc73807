/*
 * detect_cache_sql.h
 *		When detection may use the rows it held from earlier passes: see
 *		detect_cache_sql.c.
 */
#ifndef MA_DETECT_CACHE_SQL_H
#define MA_DETECT_CACHE_SQL_H

extern int	ma_detect_cache_size_mb;

extern void ma_detect_cache_define(void);
extern void ma_detect_cache_pass_begin(void);
extern void ma_detect_cache_pass_end(void);
extern bool ma_detect_cache_begin(void);
extern void ma_detect_cache_count(bool window, bool season);
extern void ma_detect_cache_end(void);

#endif							/* MA_DETECT_CACHE_SQL_H */
