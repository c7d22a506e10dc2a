// Placeholder so that `cdk synth` can bundle; the real aggregator handler replaces this file.
export async function handler(event: unknown): Promise<never> {
  void event;
  throw new Error('handler not written yet');
}
