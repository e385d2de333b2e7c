/* executor/task_internal.h - timers that wake a task (rv_sleep, timed waits). */
#ifndef RAVEL_EXECUTOR_TASK_INTERNAL_H
#define RAVEL_EXECUTOR_TASK_INTERNAL_H

#include "executor/internal.h"

typedef struct rv__task_timer rv__task_timer;

/* Arm a timer on the calling worker's wheel that wakes `t` at `deadline_ns`
 * (rv_now clock). NULL when out of memory. */
rv__task_timer *rv__task_timer_arm(rv_task *t, int64_t deadline_ns);
/* True once the deadline passed and `t` was woken for it. */
bool rv__task_timer_expired(rv__task_timer *tt);
/* Cancel (if still pending) and drop the task's reference. Any worker. */
void rv__task_timer_disarm(rv__task_timer *tt);

#endif
