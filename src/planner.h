/*-------------------------------------------------------------------------
 *
 * planner.h
 *	  The planner hook (planner.c) that keeps plans of the queue's tables
 *	  independent of how empty the tables were when they were planned.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/planner.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_PLANNER_H
#define DIALER_PLANNER_H

extern void dialer_planner_init(void);

#endif							/* DIALER_PLANNER_H */
