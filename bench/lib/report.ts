// What a benchmark returns: table rows (figure, Tasklane, baseline, ratio, target) and
// free-form details for the JSON file.

export interface Row {
  metric: string;
  tasklane: number | string;
  baseline?: number | string;
  /** tasklane / baseline (or as the row says). */
  ratio?: number;
  unit?: string;
  target?: string;
  /** undefined: no target on this row. */
  met?: boolean;
}

export interface BenchResult {
  id: string;
  title: string;
  rows: Row[];
  details: Record<string, unknown>;
  /** Why a target is not met, what limits it. */
  notes: string[];
}

export interface BenchOptions {
  quick: boolean;
  cores: number;
  /** Directory for temporary files (images) and CPU profiles. */
  workDir: string;
  /** Write --cpu-prof profiles of the API and workers into workDir/profiles. */
  profile: boolean;
  log: (message: string) => void;
}
