/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The dialer.* configuration settings (settings.c): their C variables,
 *	  the function that defines them, and the test of dialer.databases.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/settings.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_SETTINGS_H
#define DIALER_SETTINGS_H

extern char *dialer_database;
extern char *dialer_databases;
extern int	dialer_launcher_naptime_s;
extern bool dialer_enabled;
extern int	dialer_max_concurrency;
extern int	dialer_batch_size;
extern int	dialer_connect_timeout_ms;
extern int	dialer_request_timeout_ms;
extern int	dialer_max_response_kb;
extern int	dialer_shutdown_timeout_ms;
extern int	dialer_default_max_attempts;
extern int	dialer_late_tolerance_s;
extern int	dialer_retry_base_delay_ms;
extern int	dialer_retry_max_delay_ms;
extern char *dialer_allowed_numbers;
extern char *dialer_default_timezone;
extern char *dialer_call_window_start;
extern char *dialer_call_window_end;
extern int	dialer_reconcile_after_s;
extern int	dialer_standby_wait;
extern int	dialer_standby_wait_timeout_ms;

/*
 * dialer.standby_wait: which connected standbys must have flushed a claim
 * before its requests leave.
 */
typedef enum DialerStandbyWait
{
	STANDBY_WAIT_OFF,
	STANDBY_WAIT_ANY,
	STANDBY_WAIT_ALL
} DialerStandbyWait;

extern void dialer_define_settings(void);
extern bool dialer_database_is_served(const char *dbname);

#endif							/* DIALER_SETTINGS_H */
