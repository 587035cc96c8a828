/*
 * qemu-wrapper.c - loads checks.c as a second QEMU plugin, beside
 * libportal.so, until libportal.so's load= argument can load it directly
 * (then this file goes). Give it after libportal.so:
 *
 *   -plugin .build/debug/libportal.so -plugin Tests/guests/linux/build/liblinux-checks.so
 *
 * It links libportal.so with an rpath that resolves to the file QEMU loaded,
 * so that portal_attach() reaches the engine QEMU installed. Plugin
 * arguments (key=value) are passed on to portal_analysis_init joined by ','.
 */
#include <portal/qemu-plugin-api.h>

#include <stdio.h>
#include <string.h>

int portal_analysis_init(const char *args);

QEMU_PLUGIN_API_EXPORT int qemu_plugin_version = QEMU_PLUGIN_API_VERSION;

QEMU_PLUGIN_API_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                               int argc, char **argv)
{
    char args[1024] = "";
    size_t used = 0;
    (void)id;
    (void)info;
    for (int i = 0; i < argc; i++) {
        int written = snprintf(args + used, sizeof(args) - used, "%s%s", i ? "," : "", argv[i]);
        if (written < 0 || (size_t)written >= sizeof(args) - used) {
            fprintf(stderr, "host: plugin arguments longer than %zu bytes\n", sizeof(args) - 1);
            return -1;
        }
        used += (size_t)written;
    }
    return portal_analysis_init(args);
}
