//! What a user can type: the usage text, and the tables from each flag and each config
//! file key to the canonical key (the config file's spelling) both stages work with.

pub const USAGE: &str = "\
usage: qlship [-h HOST] [-p PORT] [-c CONTEXT] [-u USER] [-w PASSWORD] [OPTIONS]
              QUEUE_LOG [TOKEN [ACTIVITY_LOG]]
       qlship check [same flags and config as the daemon]
       qlship check-rules RULES_FILE [QUEUE_LOG]
       qlship status [--run-dir DIR | --config FILE] [--json]
options:
  --config FILE        KEY=VALUE file (wqloaderd's sysconfig keys work); flags win over it
  --state-dir DIR      sled journal directory (default /var/lib/qlship)
  --run-dir DIR        live status directory (default /run/qlship)
  --ram-budget SIZE    working-memory bound, K/M suffixes (default 1M)
  --spool-max SIZE     journal spool cap before reading pauses (default 64M)
  --rules FILE         split rows to several QueueMetrics by wqloader's Perl rules or
                       Uniloader's splitter JSON (multi-target mode)
  --drain              upload to the end of QUEUE_LOG, wait for acknowledgement, exit 0
  --drop-backlog       drop the unsent rows of targets the rules no longer name (or
                       name differently, or disable); without it qlship refuses to start
  --heartbeat SECS     checkHb interval, 0 disables (default 900)
  --feedback SECS      checkFb interval, 0 disables (default 0)
  --ami-hosts LIST     AMI hosts feedback actions may reach (default 127.0.0.1,::1,localhost)
  --ami-actions LIST   AMI actions they may run (default: queue, call and variable actions;
                       never Command)
  --ami-applications LIST  applications an Originate may start (default ChanSpy,ExtenSpy)
  --ami-contexts LIST  dialplan contexts Originate/Redirect/Atxfer may lead into
                       (default: any)
  --ami-functions LIST dialplan functions a Variable/Value header may name (default none)
  --ami-user USER      log in to AMI as USER (secret: AMI_SECRET in the --config file) and
                       drop QueueMetrics' own Login
  --ami-timeout SECS   AMI connect and answer deadline (default 10)
  --https              talk HTTPS to QueueMetrics (certificates checked against the system store)
  --cacert FILE        trust the CA certificates in this PEM file instead (Pi images often lack a bundle);
                       `insecure` checks no certificate at all (warned about at every start)
  --http-timeout SECS  connect+answer timeout per request (default 30)
  --backoff-min SECS   first retry delay after an error (default 1)
  --backoff-max SECS   longest retry delay (default 60)
  --rotate-grace SECS  wait this long for a rotated file's unfinished last line (default 5)
  --resync-settle SECS wait after an unanswered request before checking it (default 2x timeout)
  --summary-every SECS log a summary line per target this often (default 3600)
  --stall-after SECS   rows waiting and none acknowledged this long while the server answers:
                       stalled (status exits 1, a log line, qlship_stalled) (default 600)
  --pid-file FILE      write the process id here
  -v, --verbose        debug logging
  --log-style STYLE    auto (journald priorities when stderr is the journal, else
                       timestamps), timestamped, journal, or procd (OpenWrt: warnings
                       and errors on stderr, the rest on stdout, no timestamps)
  --version, --help";

/// Flag → canonical key (the config file's spelling).
pub(super) const VALUE_FLAGS: &[(&str, &str)] = &[
    ("-h", "HTTPHOST"),
    ("-p", "HTTPPORT"),
    ("-c", "HTTPCONTEXT"),
    ("-u", "QMUSER"),
    ("-w", "QMPASS"),
    ("--state-dir", "STATE_DIR"),
    ("--run-dir", "RUN_DIR"),
    ("--ram-budget", "RAM_BUDGET"),
    ("--spool-max", "SPOOL_MAX"),
    ("--heartbeat", "HEARTBEAT"),
    ("--feedback", "FEEDBACK"),
    ("--ami-hosts", "AMI_HOSTS"),
    ("--ami-actions", "AMI_ACTIONS"),
    ("--ami-applications", "AMI_APPLICATIONS"),
    ("--ami-contexts", "AMI_CONTEXTS"),
    ("--ami-functions", "AMI_FUNCTIONS"),
    ("--ami-user", "AMI_USER"),
    ("--ami-timeout", "AMI_TIMEOUT"),
    ("--http-timeout", "HTTP_TIMEOUT"),
    ("--backoff-min", "BACKOFF_MIN"),
    ("--backoff-max", "BACKOFF_MAX"),
    ("--rotate-grace", "ROTATE_GRACE"),
    ("--resync-settle", "RESYNC_SETTLE"),
    ("--summary-every", "SUMMARY_EVERY"),
    ("--stall-after", "STALL_AFTER"),
    ("--log-style", "LOGSTYLE"),
    ("--pid-file", "PIDFILE"),
    ("--cacert", "CACERT"),
    ("--rules", "RULES"),
];

pub(super) const FILE_KEYS: &[&str] = &[
    "HTTPHOST",
    "HTTPPORT",
    "HTTPCONTEXT",
    "QMUSER",
    "QMPASS",
    "PARTITION",
    "QUEUELOG",
    "LOGFILE",
    "PIDFILE",
    "LOCKFILE",
    "STATE_DIR",
    "RUN_DIR",
    "RAM_BUDGET",
    "SPOOL_MAX",
    "HEARTBEAT",
    "FEEDBACK",
    "HTTPS",
    "CACERT",
    "HTTP_TIMEOUT",
    "BACKOFF_MIN",
    "BACKOFF_MAX",
    "ROTATE_GRACE",
    "RESYNC_SETTLE",
    "SUMMARY_EVERY",
    "STALL_AFTER",
    "LOGLEVEL",
    "LOGSTYLE",
    "AMI_HOSTS",
    "AMI_ACTIONS",
    "AMI_APPLICATIONS",
    "AMI_CONTEXTS",
    "AMI_FUNCTIONS",
    "AMI_USER",
    "AMI_SECRET",
    "AMI_TIMEOUT",
    "RULES",
];
