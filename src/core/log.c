/* core/log.c -- JSON-lines logging to stderr.
 *
 * One line per event: {"ts":…,"level":…,"component":…,"msg":…[,"req_id":…]}.
 * A single write(2) per line keeps lines whole when threads log at once. */
#include "core.h"

#include <string.h>
#include <unistd.h>

int log_level_current = LOG_INFO;

static const char *level_name[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *s, enum log_level *out)
{
    int i;

    for (i = 0; i < 4; i++) {
        if (strcmp(s, level_name[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return E_INVAL;
}

void log_write(enum log_level lvl, const char *component, const char *req_id, const char *fmt, ...)
{
    struct buf line, msg;
    char ts[32];
    va_list ap;
    ssize_t w;

    buf_init(&line);
    buf_init(&msg);
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    time_format_iso(clock_now_ms(), ts);
    buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, level_name[lvl]);
    buf_add_json_str(&line, component, strlen(component));
    buf_adds(&line, ",\"msg\":");
    buf_add_json_str(&line, msg.p, msg.len);
    if (req_id) {
        buf_adds(&line, ",\"req_id\":");
        buf_add_json_str(&line, req_id, strlen(req_id));
    }
    buf_adds(&line, "}\n");
    w = write(STDERR_FILENO, line.p, line.len);
    (void)w;
    buf_release(&line);
    buf_release(&msg);
}
