/** kb release version, stamped into every binary (agents report it in their hello). */
export const KB_VERSION = '0.1.0';
