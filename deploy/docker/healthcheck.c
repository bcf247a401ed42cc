/*
 * healthcheck: the HEALTHCHECK of the container images (see the Dockerfile).
 *
 * The runtime images are distroless: no shell, no curl, no wget. This probe
 * sends one plain-HTTP GET to a listener in the same container and exits 0
 * when the answer's status is 2xx, 1 otherwise (connection refused, timeout,
 * another status, not HTTP). Docker runs it in exec form.
 *
 *   healthcheck ADDRESS PATH
 *   healthcheck --env NAME PATH    ADDRESS is the value of the environment
 *                                  variable NAME (GATEWAY_LISTEN, API_LISTEN)
 *
 * ADDRESS is a listen address as the services take it: "ipv4:port" or
 * "[ipv6]:port", numeric. An unspecified host (0.0.0.0, [::]) is probed on
 * loopback (127.0.0.1, [::1]). PATH starts with "/". Plain HTTP only: a
 * gateway that terminates TLS itself (--tls-cert) needs the orchestrator's
 * HTTPS probe instead. The whole probe gives up after 3 seconds.
 *
 * Built as a static binary in the Dockerfile's builder stage;
 * scripts/check-infra builds it and tests it against a local HTTP server.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define TIMEOUT_SECONDS 3

/* What the alarm exits with: 1 (timed out) until a 2xx status was read. */
static volatile sig_atomic_t alarm_exit_code = 1;

static void on_alarm(int sig) {
    static const char msg[] = "healthcheck: timed out\n";
    (void)sig;
    if (alarm_exit_code != 0 && write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* nothing left to report it to */
    }
    _exit(alarm_exit_code);
}

static int fail(const char *what, const char *detail) {
    if (detail != NULL) {
        fprintf(stderr, "healthcheck: %s: %s\n", what, detail);
    } else {
        fprintf(stderr, "healthcheck: %s\n", what);
    }
    return 1;
}

/*
 * "host:port" or "[host]:port" into *addr; an unspecified host becomes
 * loopback. Returns 0, or -1 when the text is not such an address.
 */
static int parse_address(const char *text, struct sockaddr_storage *addr, socklen_t *len) {
    char host[INET6_ADDRSTRLEN];
    const char *host_start = text;
    const char *port_text;
    size_t host_len;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        host_start = text + 1;
        host_len = (size_t)(close - host_start);
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            return -1;
        }
        host_len = (size_t)(colon - text);
        port_text = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof host) {
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';

    unsigned long port = 0;
    if (*port_text == '\0') {
        return -1;
    }
    for (const char *p = port_text; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p)) {
            return -1;
        }
        port = port * 10 + (unsigned long)(*p - '0');
        if (port > 65535) {
            return -1;
        }
    }
    if (port == 0) {
        return -1;
    }

    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        if (v4->sin_addr.s_addr == htonl(INADDR_ANY)) {
            v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        }
        *len = sizeof *v4;
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        if (memcmp(&v6->sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            v6->sin6_addr = in6addr_loopback;
        }
        *len = sizeof *v6;
        return 0;
    }
    return -1;
}

static int valid_path(const char *path) {
    if (path[0] != '/' || strlen(path) > 256) {
        return 0;
    }
    for (const char *p = path; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *address;
    const char *path;

    if (argc == 4 && strcmp(argv[1], "--env") == 0) {
        address = getenv(argv[2]);
        if (address == NULL || address[0] == '\0') {
            return fail("environment variable not set", argv[2]);
        }
        path = argv[3];
    } else if (argc == 3 && argv[1][0] != '-') {
        address = argv[1];
        path = argv[2];
    } else {
        fprintf(stderr, "usage: healthcheck ADDRESS PATH | healthcheck --env NAME PATH\n");
        return 1;
    }

    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    if (parse_address(address, &addr, &addr_len) != 0) {
        return fail("not a numeric host:port address", address);
    }
    if (!valid_path(path)) {
        return fail("the path must start with / and hold no spaces or control characters", path);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm(TIMEOUT_SECONDS);

    int fd = socket(addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        return fail("socket", strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&addr, addr_len) != 0) {
        return fail(address, strerror(errno));
    }

    char request[512];
    int request_len = snprintf(request, sizeof request,
                               "GET %s HTTP/1.1\r\n"
                               "Host: localhost\r\n"
                               "User-Agent: healthcheck\r\n"
                               "Connection: close\r\n"
                               "\r\n",
                               path);
    if (request_len < 0 || (size_t)request_len >= sizeof request) {
        return fail("request too long", NULL);
    }
    if (write_all(fd, request, (size_t)request_len) != 0) {
        return fail("sending the request", strerror(errno));
    }

    /* Only the status line matters: "HTTP/1.x NNN ...". */
    char status[128];
    size_t got = 0;
    while (got < sizeof status - 1) {
        ssize_t n = read(fd, status + got, sizeof status - 1 - got);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail("reading the answer", strerror(errno));
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
        status[got] = '\0';
        if (strstr(status, "\r\n") != NULL) {
            break;
        }
    }
    status[got] = '\0';

    char *eol = strpbrk(status, "\r\n");
    if (eol != NULL) {
        *eol = '\0';
    }
    if (strncmp(status, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)status[7]) || status[8] != ' ' ||
        !isdigit((unsigned char)status[9]) || !isdigit((unsigned char)status[10]) ||
        !isdigit((unsigned char)status[11]) || (status[12] != ' ' && status[12] != '\0')) {
        return fail("not an HTTP answer", status);
    }
    int code = (status[9] - '0') * 100 + (status[10] - '0') * 10 + (status[11] - '0');
    if (code < 200 || code > 299) {
        return fail(path, status);
    }
    printf("healthcheck: %s %s: %s\n", address, path, status);
    fflush(stdout);

    /* Read the rest until the server closes (Connection: close), so that it
     * never writes to a socket closed under it; a server that keeps the
     * connection open gets one more second, and the answer stays healthy. */
    alarm_exit_code = 0;
    alarm(1);
    char rest[4096];
    for (;;) {
        ssize_t n = read(fd, rest, sizeof rest);
        if (n > 0 || (n < 0 && errno == EINTR)) {
            continue;
        }
        break;
    }
    close(fd);
    return 0;
}
