/*
 * status_query - sends one request to a node's status endpoint (Git's
 * Simple-IPC protocol) and prints the response.
 *
 *   status_query -s STATUS_SOCKET [-t TIMEOUT_MS] [REQUEST WORDS...]
 *
 * REQUEST defaults to "status" (the node's status as JSON). Built-ins are
 * ping, version, status and help; applications add their own commands
 * (sensor_daemon: "readings"). The words are joined with spaces. Exits 1 if
 * nothing answers, the response is incomplete or the timeout passes.
 * No node is needed: gwipc_sipc_query is a one-shot client.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gwipc.h>

static int usage(void)
{
    fprintf(stderr, "usage: status_query -s STATUS_SOCKET [-t TIMEOUT_MS] [REQUEST WORDS...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    long timeout_ms = 5000;
    int opt;
    while ((opt = getopt(argc, argv, "s:t:h")) != -1) {
        switch (opt) {
        case 's': path = optarg; break;
        case 't': timeout_ms = strtol(optarg, NULL, 10); break;
        default: return usage();
        }
    }
    if (!path)
        return usage();
    char request[4096] = "status";
    if (optind < argc) {
        size_t n = 0;
        for (int i = optind; i < argc; i++) {
            int w = snprintf(request + n, sizeof request - n, "%s%s", i > optind ? " " : "", argv[i]);
            if (w < 0 || (size_t)w >= sizeof request - n) {
                fprintf(stderr, "status_query: request too long\n");
                return 2;
            }
            n += (size_t)w;
        }
    }

    char *response = NULL; /* owned: gwipc_free */
    size_t len = 0;
    gwipc_error err = GWIPC_ERROR_INIT;
    int rc = gwipc_sipc_query(path, request, strlen(request), timeout_ms * 1000, &response, &len, &err);
    if (rc != GWIPC_OK) {
        fprintf(stderr, "status_query: %s: %s (%s)\n", path, gwipc_error_name(rc), err.message);
        return 1;
    }
    fwrite(response, 1, len, stdout);
    if (len > 0 && response[len - 1] != '\n')
        putchar('\n');
    gwipc_free(response);
    return 0;
}
