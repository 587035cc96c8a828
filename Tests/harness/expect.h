/*
 * expect.h - every log text the scenarios look for, in one place.
 *
 * The engine's log lines have the form "portal: LEVEL: message". Their
 * exact wording is not settled, so the scenarios only check what they must
 * (a line's level, and that it names the thing it is about); when the wording
 * changes, this is the only file to edit.
 */
#ifndef HARNESS_EXPECT_H
#define HARNESS_EXPECT_H

/* Every line starts with this. */
#define LOG_PREFIX "portal: "

/* The LEVEL part of a line, as written by each `log=` setting. */
#define LOG_LEVEL_ERROR "error"
#define LOG_LEVEL_WARN  "warn"
#define LOG_LEVEL_INFO  "info"
#define LOG_LEVEL_DEBUG "debug"

/* init_plugin refusing an argument logs an error line naming the argument's
 * key (for an unknown key) or its value (for a malformed value). */
#define LOG_REFUSED_ARG_LEVEL LOG_LEVEL_ERROR

/* uninit_plugin logs one line per live conversation it ends, naming the
 * region address in this format. */
#define LOG_LIVE_CONVERSATION_REGION_FMT "%#llx"

/* A failed step is logged at this level with the step's error message. */
#define LOG_STEP_FAILED_LEVEL LOG_LEVEL_ERROR

#endif /* HARNESS_EXPECT_H */
